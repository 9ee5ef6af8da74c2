"""Measured results, committed as the benchmark wrote them: what the notebook's time table quotes, so that no run
time is typed by hand, and no time is claimed for a machine that never ran the preset."""
import json
import statistics
import textwrap
from pathlib import Path

from ..recipes import PRESETS

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "current"
NO_TTA = "- (no TTA)"  # a recipe without test-time augmentation, as every table and the README write it


def benchmark_runs(folder=RESULTS) -> list[dict]:
    """Every per-seed record of every committed benchmark output in `folder` (summary lines left out)."""
    return [record for path in sorted(Path(folder).glob("*.jsonl"))
            for record in map(json.loads, path.read_text().splitlines()) if "seed" in record]


def machine(record: dict) -> str:
    """Where a record was measured, as the time table says it: "CPU: AMD EPYC (...)" or "GPU: NVIDIA H100 ..."."""
    return f"{'CPU' if record['device'].split(':')[0] == 'cpu' else 'GPU'}: {record['processor']}"


def time_rows(presets, records, in_notebook: dict) -> list[dict]:
    """One row per preset and machine its committed runs were measured on (a preset never measured: one row saying
    so): the number of seeds, the median training time, the precision, the mean plain and TTA test accuracy over
    those seeds (a mean on the row's processor, which this run's own accuracy need not match).

    in_notebook: {preset: what the notebook does with it}: "trained" or "loaded" (from weights/)."""
    rows = []
    for preset in presets:
        runs = [r for r in records if r["preset"] == preset]
        tta = PRESETS[preset].recipe.tta
        for where in dict.fromkeys(map(machine, runs)) or ["not measured"]:
            mine = [r for r in runs if machine(r) == where]
            plain = [r.get("test_acc_plain") for r in mine]
            rows.append({
                "preset": preset, "notebook": in_notebook.get(preset, "not run"), "measured on": where,
                "precision": distinct(mine, "precision") or "-", "seeds": len(mine),
                "epochs": f"{mine[0]['epochs']:g}" if mine else "-",
                "median time": duration_text(statistics.median(r["train_seconds"] for r in mine)) if mine else "-",
                "mean plain": f"{statistics.mean(plain):.2f}%" if mine and None not in plain else "-",
                "mean TTA": NO_TTA if tta == "none" else
                            f"{statistics.mean(r['test_acc'] for r in mine):.2f}%" if mine else "-"})
    return rows


def seed_range(records, preset: str) -> str:
    """The lowest and highest plain test accuracy of the preset's recorded seeds, per machine: how much the seed
    alone moves the result (a machine or precision changes it too, so each range keeps its machine)."""
    runs = [r for r in records if r["preset"] == preset and r.get("test_acc_plain") is not None]
    ranges = [f"{len(mine)} on {where}: {min(mine):.2f}% to {max(mine):.2f}% plain"
              for where in dict.fromkeys(map(machine, runs))
              for mine in [[r["test_acc_plain"] for r in runs if machine(r) == where]]]
    return f"recorded seeds of {preset}: {'; '.join(ranges)}" if ranges else f"no recorded seed of {preset}"


def here_note(records, device_type: str, processor: str, width: int = 110) -> str:
    """What the records say about this machine, wrapped to `width`: the presets measured on this very processor or
    GPU, or that none was. A time measured elsewhere is never converted: processors reach very different shares of
    their matmul peaks on these small convolutions, and a GPU step of them waits on kernel launches."""
    kind = "CPU" if device_type == "cpu" else "GPU"
    here = f"{kind}: {processor}"
    return textwrap.fill(_here_text(records, kind, here), width)


def _here_text(records, kind: str, here: str) -> str:
    measured = list(dict.fromkeys(r["preset"] for r in records if machine(r) == here))
    if measured:
        return f"this machine ({here}) has records of {', '.join(measured)}: their rows are times to expect here"
    if kind == "GPU":
        return (f"this machine ({here}): no record on a GPU of this kind, so no time to expect here (a GPU step of "
                f"these small networks waits on kernel launches, not on arithmetic: its matmul peak says nothing)")
    return (f"this machine ({here}): no record on this processor, so no time to expect here (times do not carry "
            f"from one processor to another); the side-by-side table gives the times measured here")


def tflop_eq(record: dict) -> float | None:
    """A record's TFLOP-equivalents: `tflop_eq`, named `peak_tflop_s` in the records written before it."""
    return record.get("tflop_eq", record.get("peak_tflop_s"))


def duration_text(seconds: float) -> str:
    """'19.2 s' under two minutes, else '8.9 min': how the README and the notebook say a training time."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def distinct(runs, key) -> str:
    """Every value the runs record under `key`, in order of appearance: `auto` may pick a different precision
    for two seeds of one preset, and the table must not quote the first one as if it were all."""
    return " and ".join(dict.fromkeys(str(r[key]) for r in runs))
