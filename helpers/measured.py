"""Measured results, committed as the benchmark wrote them (benchmarks/results/current/*.jsonl): what the notebook's
settings cell quotes, so that no run time is typed by hand."""
import json
import statistics
from pathlib import Path

from .recipes import epochs_text

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "current"


def benchmark_runs(folder=RESULTS) -> list[dict]:
    """Every per-seed record of every committed benchmark output (summary lines left out)."""
    return [record for path in sorted(Path(folder).glob("*.jsonl"))
            for record in map(json.loads, path.read_text().splitlines()) if "seed" in record]


def run_time_table(presets, records, peak: float | None = None) -> str:
    """One line per preset: the median training time of its committed runs on a CPU and on a GPU, one figure per
    processor (the same preset runs several times faster on one CPU than on another), with the precision, or "not
    measured"; with `peak` (this machine's matmul GFLOP/s, device.peak_gflops), the time to expect here.

    The expectation divides the runs' compute in TFLOP-equivalents (seconds x their machine's peak) by this
    machine's peak: it carries across processors far better than seconds, not exactly (a CPU reaches a larger
    share of its peak on some networks than another does)."""
    lines = []
    for preset in presets:
        cells = []
        for kind in ("cpu", "cuda"):
            runs = [r for r in records if r["preset"] == preset and r["device"].split(":")[0] == kind]
            processors = dict.fromkeys(r["processor"] for r in runs)
            figures = [time_figure([r for r in runs if r["processor"] == p]) for p in processors]
            cells.append(f"{kind.upper()}: {', '.join(figures) or 'not measured'}")
        runs = [r for r in records if r["preset"] == preset and tflop_eq(r) is not None]
        if peak and runs:
            expected = statistics.median(map(tflop_eq, runs)) * 1000 / peak
            cells.append(f"here: about {duration_text(expected)}")
        lines.append(f"{preset:>8}: " + "; ".join(cells))
    return "\n".join(lines)


def tflop_eq(record: dict) -> float | None:
    """A record's TFLOP-equivalents: `tflop_eq`, named `peak_tflop_s` in the records written before it."""
    return record.get("tflop_eq", record.get("peak_tflop_s"))


def duration_text(seconds: float) -> str:
    """'19.2 s' under two minutes, else '8.9 min': how the README and the notebook say a training time."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def summary_line(path) -> dict:
    """The summary a benchmark output ends with (mean and min accuracy, median time over its seeds)."""
    return next(record for record in map(json.loads, Path(path).read_text().splitlines()) if "summary" in record)


def time_figure(runs) -> str:
    """The median training time of runs on one processor, with what they were trained in and reached."""
    seconds = statistics.median(r["train_seconds"] for r in runs)
    return (f"{duration_text(seconds)} for {epochs_text(runs[0]['epochs'])} ({runs[0]['processor']}, "
            f"{distinct(runs, 'precision')}; median of {len(runs)} run{'s' * (len(runs) > 1)}, mean test accuracy "
            f"{statistics.mean(r['test_acc'] for r in runs):.2f}%)")


def distinct(runs, key) -> str:
    """Every value the runs record under `key`, in order of appearance: `auto` may pick a different precision
    for two seeds of one preset, and the table must not quote the first one as if it were all."""
    return " and ".join(dict.fromkeys(str(r[key]) for r in runs))
