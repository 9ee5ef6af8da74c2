"""Measured results, committed as the benchmark wrote them (benchmarks/results/*.jsonl): what the notebook's
settings cell quotes, so that no run time is typed by hand."""
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def benchmark_runs(folder=RESULTS) -> list[dict]:
    """Every per-seed record of every committed benchmark output (summary lines left out)."""
    return [record for path in sorted(Path(folder).glob("*.jsonl"))
            for record in map(json.loads, path.read_text().splitlines()) if "seed" in record]


def run_time_table(presets, records) -> str:
    """One line per preset: the median training time of its committed runs on a CPU and on a GPU, with the
    processor and precision, or "not measured"."""
    lines = []
    for preset in presets:
        cells = []
        for kind in ("cpu", "cuda"):
            runs = [r for r in records if r["preset"] == preset and r["device"].split(":")[0] == kind]
            if not runs:
                cells.append(f"{kind.upper()}: not measured")
                continue
            seconds = statistics.median(r["train_seconds"] for r in runs)
            cells.append(f"{kind.upper()}: {seconds / 60:.1f} min for {runs[0]['epochs']} epochs "
                         f"({distinct(runs, 'processor')}, {distinct(runs, 'precision')}; median of {len(runs)} "
                         f"run{'s' * (len(runs) > 1)}, mean test accuracy "
                         f"{statistics.mean(r['test_acc'] for r in runs):.2f}%)")
        lines.append(f"{preset:>6}: " + "; ".join(cells))
    return "\n".join(lines)


def distinct(runs, key) -> str:
    """Every value the runs record under `key`, in order of appearance: `auto` may pick a different precision
    for two seeds of one preset, and the table must not quote the first one as if it were all."""
    return " and ".join(dict.fromkeys(str(r[key]) for r in runs))
