"""Where a preset's training step spends its time: the torch profiler's table over a few steps of the real loop, and
the share of the step that Muon's orthogonalisation takes.

    python benchmarks/profile_step.py [--preset fast] [--steps 20] [--precision auto] [--out FILE]

It runs helpers.loop.train itself on a slice of CIFAR-10 (a warm-up run first, untimed), so what it profiles
is what a run executes. The table (self CPU time per op, the largest first) goes to stdout or --out; the last
lines give the optimisers' shares of the step.
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from helpers.data import load_cifar10  # noqa: E402
from helpers.loop import train  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.recipes import PRECISIONS, PRESETS, resolve  # noqa: E402
from helpers.runtime.device import keep_freed_memory, pick_device, processor_name  # noqa: E402
from helpers.start import start_run  # noqa: E402


def profiled_steps(preset: str, steps: int, precision: str, device) -> tuple[str, dict]:
    """(the profiler's table, {label: share of the steps' time}) for `steps` steps of the preset's training."""
    run = resolve(preset, precision=precision)

    def build():
        return build_model(run.architecture, **run.model_kwargs)

    recipe, generator, model, precision_line = start_run(replace(run.recipe, epochs=1), device, 0, build,
                                                         report=lambda _: None)
    data = load_cifar10(None)
    data = data.subset(steps * recipe.batch_size, 1)
    train(build(), data, recipe, device=device, progress=False, evaluate_each_epoch=False)  # warm-up: kernels chosen
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        seconds = train(model, data, recipe, generator, device, progress=False, evaluate_each_epoch=False)[0]["seconds"]
    events = profiler.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60)
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    shares = {e.key: e.cpu_time_total / 1e6 / seconds for e in events if e.key.startswith("Optimizer.step#")}
    return (f"{preset} at batch {recipe.batch_size}, {precision_line}, {steps} steps in {seconds:.2f} s on "
            f"{processor_name(device)} (profiled: {total:.2f} s of self time)\n{table}"), shares


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/profile_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--device", help="cpu, cuda, ... (default: a GPU when there is one)")
    parser.add_argument("--out", type=Path, help="write the table here as well")
    args = parser.parse_args(argv)
    keep_freed_memory()
    table, shares = profiled_steps(args.preset, args.steps, args.precision, pick_device(args.device))
    text = table + "\n" + "\n".join(f"{label}: {share:.1%} of the steps' time" for label, share in shares.items())
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
