"""Time to accuracy of a training preset, measured against the machine's own limit: one JSON object per seed, then
a summary line.

    python benchmarks/time_to_accuracy.py --seed 0 1 2 [--preset fast] [--epochs N] [--precision P] [--data ROOT]
                                          [--out DIR] [--quick]

The options are those of `python -m helpers.train` (helpers/train.py), with --seed taking several seeds. Each line
says what ran: the recipe as resolved (its precision decided), the network and its arguments, the commit (and
whether the tree had changes), the torch version. train_seconds is the training wall time (data already in memory,
test evaluations not counted); warmup_seconds is the untimed run of a few steps before it (kernel selection,
allocation), never counted.
test_acc is the recipe's own evaluation (its TTA), test_acc_plain is without TTA. Against the machine
(benchmarks/RESULTS.md explains each field): peak_gflops is the best of fp32 and bf16 matmuls (2048^3 on a CPU;
on a GPU fp32 and its half precision, grown to a size that takes a few ms, timed with CUDA events), probed just
before and just after each run (peak_probes), the higher
counting: one probe is a short burst, which a slow moment of a shared machine can pull down, and a low peak would
flatter the run; train_tflop = 2 x 3 x forward multiply-adds per image x images trained, plus muon_tflop, Muon's
orthogonalisation; efficiency = train_tflop / train_seconds / peak; tflop_eq = train_seconds x peak / 1000, in
TFLOP: the compute the machine offered meanwhile.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
import torch  # noqa: E402

from helpers.checkpoints import save_checkpoint  # noqa: E402
from helpers.data import load_cifar10  # noqa: E402
from helpers.evaluation import evaluate  # noqa: E402
from helpers.loop import train  # noqa: E402
from helpers.models import (  # noqa: E402
    build_model,
    count_macs,  # noqa: E402
    count_parameters,
)
from helpers.muon import newton_schulz_flops  # noqa: E402
from helpers.optimizers import muon_banks  # noqa: E402
from helpers.errors import ConfigError  # noqa: E402
from helpers.recipes import Recipe, quick_data, training_steps  # noqa: E402
from helpers.runtime.device import (  # noqa: E402
    keep_freed_memory,
    peak_gflops,
    pick_device,
    processor_name,
    synchronize,
)
from helpers.run_folder import writable_folder  # noqa: E402
from helpers.start import start_run  # noqa: E402
from helpers.train import USER_ERRORS, add_run_options, exit_with_error, resolve_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5  # an untimed run of this many steps first: kernels chosen (cuDNN's benchmark), memory allocated


def warm_up(data, recipe, architecture: str, model_kwargs, device) -> float:
    """Seconds of an untimed run of WARMUP_STEPS steps of a throwaway copy of the network, just before the seed's
    own run: what a first step costs beyond the others (kernel selection, allocation) stays out of train_seconds.
    It runs on a fork of the random generators, so the seed's run draws exactly what it would have without it."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        train(build_model(architecture, **model_kwargs), data.subset(WARMUP_STEPS * recipe.batch_size, 1),
              replace(recipe, epochs=1), torch.Generator().manual_seed(0), device, progress=False,
              evaluate_each_epoch=False)
    synchronize(device)
    return time.perf_counter() - start


def code_version(root: Path = ROOT) -> dict:
    """{"commit": HEAD's hash, "dirty": whether the tree differs from it}, both None outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                                check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def run_seed(data, name, preset, model_kwargs, seed: int, device, out=None) -> dict:
    """One seed's record, the rule that chose its precision among it."""
    recipe, generator, model, precision_rule = start_run(
        preset.recipe, device, seed, lambda: build_model(preset.architecture, **model_kwargs), report=lambda _: None)
    warmup = warm_up(data, recipe, preset.architecture, model_kwargs, device)
    probes = [peak_gflops(device)]
    macs = count_macs(model, (3, 32, 32))
    history = train(model, data, recipe, generator, device, progress=False, evaluate_each_epoch=False)
    probes.append(peak_gflops(device))
    peak = max(probes)
    seconds = sum(h["seconds"] for h in history)
    steps = training_steps(len(data.train_images), recipe)
    images = steps * recipe.batch_size
    muon_tflop = steps * sum(newton_schulz_flops(p.shape) for p in muon_banks(model, recipe)) / 1e12
    train_tflop = 6 * macs * images / 1e12 + muon_tflop
    result = {"seed": seed, "device": str(device), "processor": processor_name(device),
              "architecture": preset.architecture, "params": count_parameters(model), "epochs": recipe.epochs,
              "precision": recipe.precision, "train_seconds": round(seconds, 2), "warmup_seconds": round(warmup, 2),
              "images_per_second": round(images / seconds, 1),
              "test_acc": round(evaluate(model, data.test_images, data.test_labels, tta=recipe.tta), 2),
              "test_acc_plain": round(evaluate(model, data.test_images, data.test_labels), 2),
              "peak_gflops": round(peak, 1), "peak_probes": [round(p, 1) for p in probes],
              "train_tflop": round(train_tflop, 3), "muon_tflop": round(muon_tflop, 3),
              "efficiency": round(train_tflop * 1000 / seconds / peak, 3),
              "tflop_eq": round(seconds * peak / 1000, 2), "recipe": asdict(recipe),
              "model_kwargs": model.model_kwargs, "torch": torch.__version__, "precision_rule": precision_rule}
    if out is not None:
        path = save_checkpoint(model, Path(out) / f"seed{seed}.pt", recipe=asdict(recipe), preset=name, seed=seed,
                               history=history, processor=result["processor"], test_acc=result["test_acc"],
                               test_images=len(data.test_images))
        result["checkpoint"] = str(path)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/time_to_accuracy.py",
                                     description=__doc__.split("\n\n")[0])
    add_run_options(parser, several_seeds=True)
    parser.add_argument("--out", help="folder for seed<N>.pt checkpoints of exactly the models evaluated, and "
                                      "report.jsonl, the lines printed")
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append", type=recipe_override,
                        default=[], help="screen a recipe change (e.g. --set lr=0.2 --set label_smoothing=0.1); "
                                         "each record names the changes it ran with")
    args = parser.parse_args(argv)
    try:
        measure(args)
    except USER_ERRORS as error:
        exit_with_error(parser, error)
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog}: interrupted; the seed in progress is lost, each seed printed above is "
                         f"complete{f' and in {Path(args.out) / REPORT}' if args.out else ''}\n")


def recipe_override(text: str) -> tuple[str, object]:
    """'lr=0.2' as ("lr", 0.2), the value of the type the Recipe field holds ('none' for an optional one's None)."""
    field, _, value = text.partition("=")
    kinds = {f.name: f.type for f in fields(Recipe)}
    if field not in kinds or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE with a Recipe field: {', '.join(kinds)}")
    kind = kinds[field]
    if value == "none" and type(None) in getattr(kind, "__args__", ()):
        return field, None
    convert = {bool: lambda v: {"true": True, "false": False}[v]}.get(kind, kind if isinstance(kind, type) else float)
    try:
        return field, convert(value)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{value!r} is not a value for {field} ({kinds[field]})") from None


def prepare_out(out, seeds) -> Path | None:
    """The --out folder, checked before any training: each seed once, nothing there replaced, a folder it can write."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(f"seed {repeated[0]} is given more than once: each seed runs once")
    if out is None:
        return None
    out = Path(out)
    taken = [p.name for p in [out / REPORT, *(out / f"seed{seed}.pt" for seed in seeds)] if p.exists()]
    if taken:
        raise ConfigError(f"--out {out} already holds {', '.join(taken)}: choose another --out (nothing is replaced)")
    writable_folder(out)  # the report itself comes with the first result: a run that fails first leaves none
    return out


REPORT = "report.jsonl"  # in --out: the lines printed, for verify_checkpoints.py --report


def measure(args) -> None:
    name, preset, model_kwargs = resolve_options(args)
    device, seeds = pick_device(args.device), args.seed or [0]
    try:
        preset = replace(preset, recipe=replace(preset.recipe, **dict(args.overrides)))
    except ValueError as error:
        raise ConfigError(f"--set: {error}") from None
    version = code_version()  # the tree as it is before --out is written
    out = prepare_out(args.out, seeds)
    keep_freed_memory()  # as the training command does: freed memory stays in the process for the next step
    data = load_cifar10(args.data)
    data = quick_data(data) if args.quick else data

    def report(line: dict) -> None:
        print(json.dumps(line), flush=True)
        if out is not None:
            with open(out / REPORT, "a") as file:
                file.write(json.dumps(line) + "\n")

    results = []
    for seed in seeds:
        results.append(run_seed(data, name, preset, model_kwargs, seed, device, out))
        report({"preset": name, **({"overrides": dict(args.overrides)} if args.overrides else {}), **results[-1],
                **version})
    accuracies = [r["test_acc"] for r in results]
    report({"summary": name, "seeds": seeds, "mean_test_acc": round(statistics.mean(accuracies), 2),
                      "min_test_acc": min(accuracies),
                      "mean_test_acc_plain": round(statistics.mean(r["test_acc_plain"] for r in results), 2),
                      "min_test_acc_plain": min(r["test_acc_plain"] for r in results),
                      "median_train_seconds": statistics.median(r["train_seconds"] for r in results),
                      "max_train_seconds": max(r["train_seconds"] for r in results),
                      "median_tflop_eq": statistics.median(r["tflop_eq"] for r in results)})


if __name__ == "__main__":
    main()
