"""`python -m helpers.train`: train a preset on CIFAR-10, evaluate, save; and the options every command shares.

Every command that trains (this one and benchmarks/time_to_accuracy.py) takes the same options with the same
meanings, resolved by helpers.recipes.resolve; a user's mistake ends any of them with one `error:` line and
status 2, an interruption with one line saying what was kept and status 130. The loop itself is
helpers.loop.train.
"""
import argparse
import inspect
import json
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .checker.spec import check_s7, format_checks
from .checkpoints import (
    MAX_SEED,
    CheckpointError,
    load_resumable,
    model_filename,
    save_checkpoint,
    write_atomically,
)
from .data import DatasetError, load_cifar10
from .errors import ConfigError
from .evaluation import evaluate
from .loop import NonFiniteLossError, train
from .models import ARCHITECTURES, build_model
from .recipes import (
    DEFAULT_PRESET,
    PRECISIONS,
    PRESETS,
    Preset,
    epoch_count,
    epochs_text,
    quick_data,
    recipe_from_dict,
    resolve,
)
from .run_folder import held_run_folder, remove_other_runs, resume_hint, train_command
from .runtime.device import describe_device, keep_freed_memory, processor_name
from .runtime.distributed import (
    DistributedSetupError,
    DistributedTimeoutError,
    distributed_session,
    is_main_process,
    world_size,
)
from .start import start_run
from .user_network import NORMALIZE_HELP, net_recipe, user_network

USER_ERRORS = (DatasetError, ConfigError, CheckpointError, NonFiniteLossError, DistributedTimeoutError,
               DistributedSetupError)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


def positive_number(text: str) -> float:
    """An --epochs such as 12 or 1.5 (a whole number stays an int, as the presets write it)."""
    try:
        value = int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def device_name(text: str) -> str:
    """A --device this machine has: cpu, cuda, cuda:N or mps; checked before any data loads."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: training runs on cpu, cuda or mps, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: torch sees no CUDA GPU here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: Apple's MPS is not available here")
    return text


def seed_value(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is not a seed from 0 to 2**63 - 1")
    return value


def preset_summary(name: str) -> str:
    """'fast: S7AirNet 24 128 256 256, 1 epoch', read from the preset and its network's default widths, so the
    help can never disagree with PRESETS."""
    preset = PRESETS[name]
    defaults = inspect.signature(ARCHITECTURES[preset.architecture]).parameters
    widths = preset.model_kwargs.get("widths", defaults["widths"].default if "widths" in defaults else None)
    shape = f" {' '.join(map(str, widths))}" if widths else ""
    return f"{name}: {preset.architecture}{shape}, {epochs_text(preset.recipe.epochs)}"


def add_run_options(parser: argparse.ArgumentParser, several_seeds: bool = False) -> None:
    """The options every training command shares; --quick composes with the others the same way everywhere."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help=f"network (its widths) and training recipe; "
                        f"default {DEFAULT_PRESET} ({'; '.join(map(preset_summary, PRESETS))})")
    parser.add_argument("--epochs", type=positive_number, help="override the preset's number of epochs, a fraction "
                                                              "ending the last one early (the "
                                                            "learning-rate schedule spans them)")
    parser.add_argument("--batch-size", type=positive_int, help="override the preset's (global) batch size")
    parser.add_argument("--widths", type=positive_int, nargs=4, metavar="W",
                        help="channels in C1 C2 C3 C4 (default: the preset's, listed under --preset)")
    parser.add_argument("--precision", choices=PRECISIONS, help="arithmetic of the training steps (default auto: "
                        "bf16 or fp16 on a GPU; on a CPU bf16 where it has AMX or is an AMD with AVX512-BF16, else "
                        "fp32; a resumed run's own)")
    parser.add_argument("--data", help="data root holding cifar-10-batches-bin/ or -py/ (default $CIFAR10_ROOT "
                                       "or ./data; downloaded there when missing)")
    parser.add_argument("--device", type=device_name,
                        help="cpu, cuda, cuda:1, mps (default: a GPU when there is one, else the CPU)")
    parser.add_argument("--seed", type=seed_value,
                        nargs="+" if several_seeds else None,
                        help="random seed" + ("s, one run each" if several_seeds else "") + " (default 0)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the network (worth it on a GPU, where eager steps wait on kernel launches; "
                             "the compile takes a minute first)")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="smoke run: 2,048 training images, one epoch at batch 256 (the preset's if smaller) "
                             "unless overridden")
    parser.add_argument("--net", metavar="FILE.py[:NAME]",
                        help="train your own network instead of the preset's: a class in the file (or a function that "
                             "builds it with no arguments), any nn.Module mapping (N, 3, 32, 32) images to 10 scores; "
                             "it trains with the recipe for any network unless --preset names one")
    parser.add_argument("--normalize", help=f"with --net: {NORMALIZE_HELP}")


def resolve_options(args) -> tuple[str, Preset, dict]:
    """(the recipe's preset name, the preset as it will run, model kwargs) from the shared options. With --net the
    network is the user's, loaded and checked here, before anything is written or trained: its recipe is net_recipe's
    unless --preset names one (a preset's recipe, not its network)."""
    if args.normalize and not args.net:
        raise ConfigError("--normalize says how a --net network expects its inputs; the presets' networks "
                          "normalise inside")
    if args.net and args.widths:
        raise ConfigError("--widths sets the channels of a preset's network; a --net network is built as its file "
                          "says")
    name = args.preset or ("net" if args.net else DEFAULT_PRESET)
    base = PRESETS[name] if name != "net" else None
    if args.net:
        network = user_network(args.net, args.normalize or "cifar")
        base = Preset("UserNetwork", base.recipe if base else net_recipe(network.net), network.model_kwargs)
    preset = resolve(base, quick=bool(args.quick), epochs=args.epochs, batch_size=args.batch_size,
                     precision=args.precision, compile=args.compile,
                     sync_batchnorm=getattr(args, "sync_batchnorm", None))
    return name, preset, {**preset.model_kwargs, **({"widths": args.widths} if args.widths else {})}


def exit_with_error(parser: argparse.ArgumentParser, error: Exception) -> None:
    """The one way a command reports a user's mistake: `prog: error: message`, status 2."""
    parser.exit(2, f"{parser.prog}: error: {error}\n")


class Interrupted(Exception):
    """Ctrl-C during a run: the message says what was kept and how to go on."""


# What --resume takes from the checkpoint instead of the command line.
RUN_OPTIONS = ("preset", "epochs", "batch_size", "widths", "precision", "compile", "sync_batchnorm", "seed", "quick")
RESUME_MAY_CHANGE = ("precision", "compile")  # how the rest of a run is computed, not what it computes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.train",
                                     description="Train an S7 network on CIFAR-10 and print the final test accuracy. "
                                                 "Under torchrun, one process per GPU (DistributedDataParallel).")
    add_run_options(parser)
    parser.add_argument("--out", help="folder for the final model, history.json and last.pt, the state to resume "
                                      "from written after every epoch (default runs/PRESET-seedN)")
    parser.add_argument("--sync-batchnorm", action="store_true", default=None,
                        help="under torchrun on GPUs, normalise with the whole batch's statistics (slower; by default "
                             "each GPU normalises with its own slice's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an --out that holds a run, or let --resume replace a finished run in its "
                             "folder (its files stay until this run writes its own)")
    parser.add_argument("--check", action="store_true",
                        help="stop before training when the model fails the S7 checks (parameters, RF, ...)")
    parser.add_argument("--resume", metavar="LAST_PT", help="continue the run saved in this last.pt, with its "
                                                            "own recipe, widths, seed and data slice")
    parser.add_argument("--stop-after-epoch", type=positive_int, metavar="K",
                        help="stop after epoch K (the schedule still spans all epochs); go on later with --resume")
    return parser


def main(argv=None):
    """`python -m helpers.train`: train, evaluate, save; return the final test accuracy (None when stopped)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in (*RUN_OPTIONS, "out")
             if getattr(args, name) not in (None, False) and name not in RESUME_MAY_CHANGE]
    if args.resume and given:
        exit_with_error(parser, f"--resume continues a run with its own settings, in its own folder: drop "
                                f"{', '.join(given)}")
    try:
        with terminated_like_ctrl_c(), distributed_session(args.device) as device:
            return run(args, device)
    except USER_ERRORS as error:
        exit_with_error(parser, error)
    except Interrupted as interruption:
        parser.exit(130, f"{parser.prog}: interrupted: {interruption}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog}: interrupted before training began; nothing was saved\n")


@contextmanager
def terminated_like_ctrl_c():
    """SIGTERM (what `timeout`, `kill` and batch schedulers send) answered as Ctrl-C is: a line saying what was
    kept, no half-written file. The handler before is restored after."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args, device):
    """Train, evaluate and save as the parsed command line says, in a run folder held for this run alone."""
    if args.resume:
        checkpoint = load_resumable(args.resume)
        recipe, model_kwargs = resumed_recipe(checkpoint, args), checkpoint["model_kwargs"]
        architecture, config = checkpoint["architecture"], {"seed": 0, "quick": False, **checkpoint["config"]}
        out = Path(args.resume).parent
    else:
        name, preset, model_kwargs = resolve_options(args)
        checkpoint, recipe, architecture = None, preset.recipe, preset.architecture
        config = {"preset": name, "seed": args.seed or 0, "quick": bool(args.quick)}
        folder = model_kwargs["entry"].lower() if args.net else name
        out = Path(args.out or f"runs/{folder}{'-quick' if args.quick else ''}-seed{config['seed']}")
    report = print if is_main_process() else (lambda *_, **__: None)
    with held_run_folder(out, args.overwrite, resuming=bool(args.resume)) if is_main_process() else nullcontext():
        keep_freed_memory()  # a command owns its process: freed memory is kept for the next step
        report(describe_device(device) + (f"; {world_size()} processes (DistributedDataParallel)"
                                          if world_size() > 1 else ""))
        recipe, generator, model, _ = start_run(recipe, device, config["seed"],
                                                lambda: build_model(architecture, **model_kwargs), checkpoint, report)
        if args.check:
            require_s7(model)
        data = load_cifar10(args.data)
        data = quick_data(data) if config["quick"] else data
        report(model.describe())
        report(f"{recipe}")
        try:
            return train_and_save(model, data, recipe, generator, device, out, checkpoint, config, args, report)
        except KeyboardInterrupt:
            raise Interrupted(resume_hint(out / "last.pt")) from None


def train_and_save(model, data, recipe, generator, device, out: Path, checkpoint, config, args, report):
    """The run itself, then its final model and history.json; the test accuracy (None when stopped early, and in
    the other processes under torchrun)."""
    history = train(model, data, recipe, generator, device, checkpoint_path=out / "last.pt", resume_from=checkpoint,
                    stop_after_epoch=args.stop_after_epoch, config=config)
    if len(history) < epoch_count(recipe):
        report(f"stopped after epoch {len(history)} of {recipe.epochs:g}; go on with: "
               f"{train_command('--resume', out / 'last.pt')}")
        return None
    if not is_main_process():  # the first process evaluates; the others would compute the same number
        return None
    test_acc = evaluate(model, data.test_images, data.test_labels, tta=recipe.tta)
    architecture = type(model).__name__
    saved = save_checkpoint(model, out / model_filename(architecture), recipe=asdict(recipe), **config,
                            history=history, processor=processor_name(device), test_acc=round(test_acc, 2),
                            test_images=len(data.test_images))
    record = json.dumps({"architecture": architecture, "recipe": asdict(recipe), **config, "history": history,
                         "test_acc": test_acc}, indent=1)
    write_atomically(out / "history.json", lambda tmp: tmp.write_text(record))
    remove_other_runs(out, architecture)
    report(f"final test accuracy: {test_acc:.2f}% (TTA: {recipe.tta}); saved {saved}")
    plain = test_acc if recipe.tta == "none" else evaluate(model, data.test_images, data.test_labels)
    report("\nThe rules, checked on the trained network:\n" + format_checks(check_s7(
        model, plain, tta_accuracy=None if recipe.tta == "none" else test_acc, device=device,
        test_images=len(data.test_images))))
    return test_acc


def resumed_recipe(checkpoint: dict, args):
    """The checkpoint's recipe, with the precision and compilation the command line asks for, if it asks: a run
    split across machines (Colab sessions change GPU) may go on in another precision. Said in one line, as the
    result then no longer equals an uninterrupted run's bit for bit."""
    saved = recipe_from_dict(checkpoint["recipe"])
    recipe = replace(saved, **{k: getattr(args, k) for k in RESUME_MAY_CHANGE if getattr(args, k) is not None})
    if recipe.precision not in ("auto", saved.precision) and is_main_process():
        print(f"resuming in {recipe.precision}, not {saved.precision} as the run began: the remaining epochs round "
              f"differently, so the result will not equal an uninterrupted run's bit for bit")
    return recipe


def require_s7(model) -> None:
    """--check: refuse, before any training, a model that breaks the assignment's rules (accuracy comes later)."""
    failed = [check for check in check_s7(model) if check.failed]  # device and accuracy: not checked before a run
    if failed:
        raise ConfigError("the model fails the S7 checks: " + "; ".join(
            f"{check.name} is {check.measured}, required {check.required}" for check in failed))


if __name__ == "__main__":
    main()
