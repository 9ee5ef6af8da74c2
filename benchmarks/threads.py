"""Milliseconds per training step on 1 and 2 intra-op threads, for small and large batches, alone on the machine or
beside a busy process (a 2-thread matmul loop, standing for another job):

    python benchmarks/threads.py alone      # or: busy

One JSON line per case: train() for a fixed number of steps, two interleaved rounds per thread count, the median.
It measured the rule in helpers.device.intra_op_threads (benchmarks/RESULTS.md), which is switched off here so
that every case runs on the threads it asks for.
"""
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import device  # noqa: E402
from helpers.data import load_cifar10  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.recipes import resolve  # noqa: E402
from helpers.training import train  # noqa: E402

CASES = [("tutorial", 4, 600), ("tutorial", 16, 300), ("tutorial", 64, 150), ("s7net", 64, 40), ("fast", 128, 30)]
BUSY = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a"


def ms_per_step(data, preset: str, batch: int, steps: int, threads: int) -> float:
    run = resolve(preset)
    recipe = replace(run.recipe, epochs=1, batch_size=batch, precision="fp32" if preset == "tutorial" else "bf16")
    torch.set_num_threads(threads)
    history = train(build_model(run.architecture, **run.model_kwargs), data.subset(batch * steps, 1), recipe,
                    device=torch.device("cpu"), progress=False, evaluate_each_epoch=False)
    return 1000 * history[0]["seconds"] / steps


def main(load: str) -> None:
    device.SINGLE_THREAD_STEP = 0  # the rule off: measure what it decides
    data = load_cifar10(None)
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
    time.sleep(2 if busy else 0)
    try:
        for preset, batch, steps in CASES:
            times = {1: [], 2: []}
            for _ in range(2):
                for threads in times:
                    times[threads].append(ms_per_step(data, preset, batch, steps, threads))
            print(json.dumps({"load": load, "preset": preset, "batch": batch, "steps": steps,
                              "ms_per_step": {t: round(statistics.median(v), 2) for t, v in times.items()},
                              "all_ms": {t: [round(x, 2) for x in v] for t, v in times.items()}}), flush=True)
    finally:
        if busy:
            busy.kill()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "alone")
