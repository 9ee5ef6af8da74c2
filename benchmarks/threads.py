"""Milliseconds per training step alone on the machine and beside one busy neighbour, for each way of running the
intra-op threads: OpenMP's default wait (a long spin, then sleep), shorter spins (GNU OpenMP's GOMP_SPINCOUNT, the
one helpers sets), its passive wait, and one thread.

    python benchmarks/threads.py [--cases fast:128:30 s7net:512:8] [--configs default short-spin passive one-thread]
                                 [--rounds 3] > benchmarks/results/threads/load.jsonl

A case is PRESET:BATCH:STEPS. Every measurement runs in a fresh process, since OpenMP reads its wait policy once,
when torch loads it: train() of the preset's network on made-up images, a few untimed steps first, then STEPS timed
ones. The neighbour is a Python busy loop (one core taken, as by another job), started before the measurement and
stopped after it. Rounds interleave every case, configuration and load, so a slow moment of the machine hits them
alike; the lines give medians over the rounds. One JSON line per case, configuration and load, then one summary
line per case and configuration: the neighbour's cost (busy / alone), the cost alone against the default, and
whether the weights after the steps are bit-identical to the default's alone (the wait policy changes no
arithmetic; a thread count may).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch  # before helpers, which sets the wait policy it adopted: here each configuration sets its own

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.runtime import device  # noqa: E402
from helpers.data import CIFAR10  # noqa: E402
from helpers.loop import seed_everything, train  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.recipes import resolve  # noqa: E402

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# name: (environment set before torch loads, intra-op threads; None keeps torch's choice)
CONFIGS = {"default": ({}, None), "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
           "short-spin": ({"GOMP_SPINCOUNT": "10000"}, None), "shorter-spin": ({"GOMP_SPINCOUNT": "1000"}, None),
           "one-thread": ({}, 1)}
# One core kept busy for as long as this script lives (should it be killed, the loop ends with it).
NEIGHBOUR = f"import os\nwhile os.getppid() == {os.getpid()}:\n    pass"
WARMUP_STEPS = 3
MAX_BUSY_COST, MAX_ALONE_COST = 2.5, 1.05  # what a configuration must meet to be adopted


def made_up(n: int) -> CIFAR10:
    """n random images and labels: a step's time does not depend on what the pixels show."""
    make = torch.Generator().manual_seed(0)
    return CIFAR10(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=make),
                   torch.randint(0, 10, (n,), generator=make), torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
                   torch.zeros(1, dtype=torch.int64))


def measure(case: dict) -> dict:
    """In the worker process: {ms_per_step, weights_sha256, threads} of one case on the threads it asks for."""
    device.SINGLE_THREAD_STEP = 0  # steps of a few images would otherwise run on one thread whatever was asked
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    run = resolve(case["preset"])
    precision = case["precision"] if run.recipe.precision == "auto" else run.recipe.precision
    recipe = replace(run.recipe, epochs=1, batch_size=case["batch"], precision=precision)
    cpu = torch.device("cpu")
    train(build_model(run.architecture, **run.model_kwargs), made_up(WARMUP_STEPS * case["batch"]), recipe,
          device=cpu, progress=False, evaluate_each_epoch=False)
    generator = seed_everything(0)
    model = build_model(run.architecture, **run.model_kwargs)
    seconds = train(model, made_up(case["steps"] * case["batch"]), recipe, generator, cpu, progress=False,
                    evaluate_each_epoch=False)[0]["seconds"]
    weights = hashlib.sha256()
    for tensor in model.state_dict().values():
        weights.update(tensor.detach().numpy().tobytes())  # in C order, whatever the layout
    return {"ms_per_step": 1000 * seconds / case["steps"], "weights_sha256": weights.hexdigest(),
            "threads": torch.get_num_threads(), "precision": precision}


def measured_in_fresh_process(case: dict, config: str, busy: bool) -> dict:
    """One measurement in its own process, with the configuration's environment and, if busy, the neighbour."""
    variables, threads = CONFIGS[config]
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES} | variables
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if busy else None
    try:
        if neighbour:
            time.sleep(0.5)  # running before the measurement starts
        result = subprocess.run([sys.executable, __file__, "--worker", json.dumps({**case, "threads": threads})],
                                env=env, capture_output=True, text=True)
    finally:
        if neighbour:
            neighbour.kill()
            neighbour.wait()
    if result.returncode:
        sys.exit(f"{case['preset']} in configuration {config} failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def parse_case(text: str) -> dict:
    preset, batch, steps = text.split(":")
    return {"preset": preset, "batch": int(batch), "steps": int(steps)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/threads.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", type=parse_case, metavar="PRESET:BATCH:STEPS",
                        default=[parse_case("fast:128:30"), parse_case("s7net:512:8")],
                        help="the presets' networks and batches (default: fast:128:30 s7net:512:8)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS,
                        default=["default", "short-spin", "passive", "one-thread"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="bf16", help="for a preset whose precision is auto (default bf16)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    configs = ["default", *(c for c in args.configs if c != "default")]  # the others are compared with it
    header = {"processor": device.processor_name(torch.device("cpu")), "torch": torch.__version__}
    cases = [{**case, "precision": args.precision} for case in args.cases]
    keys = [(i, config, busy) for i in range(len(cases)) for config in configs for busy in (False, True)]
    runs = {key: [] for key in keys}
    for _ in range(args.rounds):
        for i, config, busy in keys:
            runs[i, config, busy].append(measured_in_fresh_process(cases[i], config, busy))
    for i, config, busy in keys:
        times = [r["ms_per_step"] for r in runs[i, config, busy]]
        print(json.dumps({**header, **cases[i], "config": config, "env": CONFIGS[config][0],
                          "threads": runs[i, config, busy][0]["threads"], "load": "busy" if busy else "alone",
                          "ms_per_step": round(statistics.median(times), 2), "all_ms": [round(t, 2) for t in times],
                          "weights_sha256": sorted({r["weights_sha256"] for r in runs[i, config, busy]})}),
              flush=True)
    for i, case in enumerate(cases):
        median = {(config, busy): statistics.median(r["ms_per_step"] for r in runs[i, config, busy])
                  for config in configs for busy in (False, True)}
        reference = {r["weights_sha256"] for r in runs[i, "default", False]}
        for config in configs:
            busy_cost = median[config, True] / median[config, False]
            alone_cost = median[config, False] / median["default", False]
            weights = {r["weights_sha256"] for busy in (False, True) for r in runs[i, config, busy]}
            print(json.dumps({**header, "summary": case["preset"], "batch": case["batch"], "config": config,
                              "busy_vs_alone": round(busy_cost, 2), "alone_vs_default": round(alone_cost, 3),
                              "busy_vs_default_alone": round(median[config, True] / median["default", False], 2),
                              "weights_as_default_alone": weights == reference,
                              "meets_target": busy_cost <= MAX_BUSY_COST and alone_cost <= MAX_ALONE_COST}),
                  flush=True)

if __name__ == "__main__":
    main()
