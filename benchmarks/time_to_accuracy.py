"""Time to accuracy of a training preset, measured against the machine's own limit: one JSON object per seed, then
a summary line.

    python benchmarks/time_to_accuracy.py --seeds 0 1 2 [--preset fast] [--epochs N] [--precision P] [--data ROOT]
                                          [--out DIR] [--quick]

The options are those of `python -m helpers.train` (helpers/train.py), with --seed (or --seeds) taking several seeds.
train_seconds is the training wall time (data already in memory, test evaluations not counted), first epoch
included; warmup_seconds estimates what the first epoch cost beyond the others (kernel selection, allocation).
test_acc is the recipe's own evaluation (flip TTA when the recipe says so), test_acc_plain is without TTA.
Against the machine (DESIGN.md): peak_gflops is the best of fp32 and bf16 2048x2048 matmuls, probed just before
and just after each run (peak_probes), the higher counting: one probe is a burst of a second or two, which a slow
moment of a shared machine can pull down, and a low peak would flatter the run; train_tflop = 2 x 3 x forward
multiply-adds per image x images trained; efficiency = train_tflop / train_seconds / peak; peak_tflop_s = train_seconds x peak / 1000, the compute the machine offered meanwhile.
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.checkpoints import save_checkpoint  # noqa: E402
from helpers.data import load_cifar10  # noqa: E402
from helpers.device import keep_freed_memory, pick_device, processor_name, synchronize  # noqa: E402
from helpers.evaluation import evaluate  # noqa: E402
from helpers.models import build_model, count_parameters  # noqa: E402
from helpers.recipes import quick_data  # noqa: E402
from helpers.train import USER_ERRORS, add_run_options, fail, resolve_options  # noqa: E402
from helpers.training import seed_everything, train  # noqa: E402
from helpers.zoo import count_macs  # noqa: E402


def peak_gflops(device, size: int = 2048, repeats: int = 5) -> float:
    """The machine's own limit: the best of fp32 and bf16 dense matmul, median of `repeats`, in GFLOP/s."""
    best = 0.0
    for dtype in (torch.float32, torch.bfloat16):
        a, b = (torch.randn(size, size, generator=torch.Generator().manual_seed(i)).to(device, dtype) for i in (0, 1))
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * size**3 / statistics.median(times) / 1e9)
    return best


def run_seed(data, name, preset, model_kwargs, seed: int, device, out=None) -> dict:
    probes = [peak_gflops(device)]
    generator = seed_everything(seed)
    model = build_model(preset.architecture, **model_kwargs)
    macs = count_macs(model, (3, 32, 32))
    history = train(model, data, preset.recipe, generator, device, progress=False, evaluate_each_epoch=False)
    probes.append(peak_gflops(device))
    peak = max(probes)
    recipe = replace(preset.recipe, precision=history[-1]["precision"])
    epoch_seconds = [h["seconds"] for h in history]
    seconds = sum(epoch_seconds)
    images = recipe.epochs * (len(data.train_images) // recipe.batch_size) * recipe.batch_size
    train_tflop = 6 * macs * images / 1e12
    result = {"seed": seed, "device": str(device), "processor": processor_name(device),
              "architecture": preset.architecture, "params": count_parameters(model), "epochs": recipe.epochs,
              "precision": recipe.precision, "train_seconds": round(seconds, 2),
              "warmup_seconds": round(epoch_seconds[0] - statistics.median(epoch_seconds[1:]), 2)
              if len(epoch_seconds) > 1 else None,
              "images_per_second": round(images / seconds, 1),
              "test_acc": round(evaluate(model, data.test_images, data.test_labels, tta=recipe.tta), 2),
              "test_acc_plain": round(evaluate(model, data.test_images, data.test_labels), 2),
              "peak_gflops": round(peak, 1), "peak_probes": [round(p, 1) for p in probes],
              "train_tflop": round(train_tflop, 3),
              "efficiency": round(train_tflop * 1000 / seconds / peak, 3),
              "peak_tflop_s": round(seconds * peak / 1000, 2)}
    if out is not None:
        path = save_checkpoint(model, Path(out) / f"seed{seed}.pt", recipe=asdict(recipe), preset=name, seed=seed,
                               history=history, processor=result["processor"], test_acc=result["test_acc"])
        result["checkpoint"] = str(path)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/time_to_accuracy.py",
                                     description=__doc__.split("\n\n")[0])
    add_run_options(parser, several_seeds=True)
    parser.add_argument("--out", "--save", help="folder for seed<N>.pt checkpoints of exactly the models evaluated "
                                                "(--save: its original name)")
    args = parser.parse_args(argv)
    try:
        measure(args)
    except USER_ERRORS as error:
        fail(parser, error)


def measure(args) -> None:
    name, preset, model_kwargs = resolve_options(args)
    device, seeds = pick_device(args.device), args.seed or [0]
    keep_freed_memory()  # as the training command does: freed memory stays in the process for the next step
    data = load_cifar10(args.data)
    data = quick_data(data) if args.quick else data
    results = []
    for seed in seeds:
        results.append(run_seed(data, name, preset, model_kwargs, seed, device, args.out))
        print(json.dumps({"preset": name, **results[-1]}), flush=True)
    accuracies = [r["test_acc"] for r in results]
    print(json.dumps({"summary": name, "seeds": seeds, "mean_test_acc": round(statistics.mean(accuracies), 2),
                      "min_test_acc": min(accuracies),
                      "mean_test_acc_plain": round(statistics.mean(r["test_acc_plain"] for r in results), 2),
                      "median_train_seconds": statistics.median(r["train_seconds"] for r in results),
                      "max_train_seconds": max(r["train_seconds"] for r in results),
                      "median_peak_tflop_s": statistics.median(r["peak_tflop_s"] for r in results)}))


if __name__ == "__main__":
    main()
