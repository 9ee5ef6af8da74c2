"""Training recipe, train/evaluate loops, checkpoints, and the command line (`python -m helpers.train`).

The notebook and the command line call the same functions; there is one training loop.
"""
import argparse
import json
import os
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import DatasetError, load_cifar10, steps_per_epoch, to_float, train_batches
from .device import describe_device, pick_device
from .distributed import all_reduce_sum, distribute, distributed_session, is_main_process, rank, world_size
from .models import build_model, count_parameters
from .spec import check_s7


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the seed (and widths); each default earns its place."""

    architecture: str = "S7Net"  # which network of helpers.models.ARCHITECTURES to train
    epochs: int = 4
    batch_size: int = 512        # big batches keep the CPU's matrix units busy; lr is matched to it
    lr: float = 0.4              # peak of the triangular schedule (SGD, Nesterov momentum); 0.2 gave -0.4%
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.25         # fraction of steps spent rising linearly from 0 to lr, then linear decay to 0
    label_smoothing: float = 0.2  # softer targets: better calibrated and more accurate on short schedules
    translate: int = 2           # augmentation: random shifts up to this many pixels (reflect padding)
    flip: bool = True            # augmentation: random horizontal flips
    alternate_flip: bool = False  # flip image i in epoch e when i + e is odd instead: each seen both ways in turn
    bias_lr_scale: float = 1.0   # BatchNorm shifts learn this many times faster (weight decay unchanged)
    bf16: bool = True            # bfloat16 autocast: ~2x faster convs on CPUs with AVX512-BF16 and on GPUs
    channels_last: bool = True   # NHWC memory layout, the one oneDNN and cuDNN convolutions prefer
    tta: bool = True             # test-time augmentation: average the logits of each image and its mirror


# fast: S7Net, 80% in under 2 minutes of a 2-core CPU (4 epochs).
# full: S7AirNet with airbench's hyperparameters (Keller Jordan), translated to a mean loss: lr 10 and weight decay
# 0.015 "per 1024 examples" at momentum 0.85 and batch 1000 are lr 1.27 and weight decay 1.5e-3 here. BatchNorm
# shifts learn 64x faster, and alternating flips show each image both ways. (S7Net for 30 epochs gave 90.2%.)
# 30 epochs: 93.25% (mean of 2 seeds); 20 gave 93.00% (no margin), 10 gave 92.05%.
PRESETS = {"fast": Recipe(),
           "full": Recipe(architecture="S7AirNet", epochs=30, batch_size=1000, lr=1.27, momentum=0.85,
                          weight_decay=1.5e-3, warmup=0.2, alternate_flip=True, bias_lr_scale=64.0)}

# The tutorial's own setting, as given: no augmentation, no smoothing, plain fp32, no TTA (batch 128, not 4).
TUTORIAL_RECIPE = Recipe(epochs=2, batch_size=128, lr=0.05, label_smoothing=0.0, translate=0, flip=False,
                         bf16=False, channels_last=False, tta=False)


def quick_mode_requested() -> bool:
    """True when $S7_QUICK=1: the tests set it so that nbval runs the notebook in moments."""
    return os.environ.get("S7_QUICK") == "1"


def quick(data, recipe: Recipe):
    """A smoke run of the same code path: 2,048 training and 1,000 test images, one epoch, batch 256."""
    return data.subset(2048, 1000), replace(recipe, epochs=1, batch_size=256)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (model init) and return the generator that orders and augments the batches."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def triangular_lr(step: int, total_steps: int, recipe: Recipe) -> float:
    """Linear warm-up to recipe.lr over the first `warmup` fraction of steps, then linear decay to zero."""
    peak = max(1, round(recipe.warmup * total_steps))
    if step < peak:
        return recipe.lr * (step + 1) / peak
    return recipe.lr * max(0.0, (total_steps - step) / max(1, total_steps - peak))


class ConfigError(ValueError):
    """Settings that do not fit together (batch size, data, processes, a resumed run); the message says which."""


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, or not of the kind asked for."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stops, and that epoch is never saved."""

    def __init__(self, step: int, total_steps: int, epoch: int, checkpoint_path=None):
        kept = (f" {checkpoint_path} still holds the last good epoch." if checkpoint_path is not None
                and Path(checkpoint_path).exists() else "")
        super().__init__(f"the loss is not finite (NaN or infinity) at step {step} of {total_steps}, in epoch "
                         f"{epoch}: training stopped.{kept} Lower the learning rate or check the data.")
        self.step, self.epoch = step, epoch


def train(model, data, recipe: Recipe = Recipe(), generator: torch.Generator = None, device=None,
          progress: bool = True, evaluate_each_epoch: bool = True, checkpoint_path=None, resume_from: dict = None,
          stop_after_epoch: int = None, config: dict = None):
    """Train `model` on data.train_*; return the history, one dict per epoch.

    Each entry has epoch, loss, train_acc, test_acc (plain, no TTA; None when not evaluated), lr and
    seconds (training time of the epoch, evaluation excluded).

    checkpoint_path: where to write the state to resume from at the end of every epoch (see load_resumable),
    with `config` (plain values the caller needs to rebuild the run, such as the seed) stored as given.
    resume_from: such a loaded state; training goes on after its epoch exactly as if never interrupted.
    stop_after_epoch: return after this epoch, the schedule still spanning recipe.epochs, to resume later.
    A non-finite loss raises NonFiniteLossError at the end of its epoch, before anything of it is written.
    Under torchrun (see helpers.distributed) each process trains on its own slice of every batch.
    """
    device = device or pick_device()
    generator = generator or torch.Generator().manual_seed(0)
    data = data.to(device)
    if len(data.train_images) < recipe.batch_size:
        raise ConfigError(f"batch size {recipe.batch_size} is larger than the {len(data.train_images)} "
                          f"training images: lower it or use more data")
    part = process_share(recipe.batch_size)
    if resume_from is None and hasattr(model, "fit_whitening"):
        model.fit_whitening(data.train_images[:5000])  # S7AirNet's first layer is set from data, not learned
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(parameter_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=True)
    done, step, history = 0, 0, []
    if resume_from is not None:
        done, step, history = restore(resume_from, model, optimizer, generator, recipe, len(data.train_images))
    net = distribute(model, device)
    progress = progress and is_main_process()
    epoch_steps = steps_per_epoch(len(data.train_images), recipe.batch_size)
    total_steps = recipe.epochs * epoch_steps
    for epoch in range(done + 1, min(recipe.epochs, stop_after_epoch or recipe.epochs) + 1):
        net.train()
        start = time.perf_counter()
        losses, correct = [], torch.zeros((), device=device)
        batches = train_batches(data.train_images, data.train_labels, recipe.batch_size, generator,
                                recipe.translate, recipe.flip, recipe.channels_last, part,
                                alternate_flip_epoch=epoch if recipe.alternate_flip else None)
        # mininterval: a few bar updates per epoch are enough, and keep a notebook's saved output short.
        for x, y in tqdm(batches, total=epoch_steps, desc=f"epoch {epoch}", leave=False, disable=not progress,
                         mininterval=5):
            for group in optimizer.param_groups:
                group["lr"] = triangular_lr(step, total_steps, recipe) * group["lr_scale"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            # Kept on the device: a .item() per step would make a GPU wait for every batch.
            losses.append(loss.detach())
            correct += (logits.argmax(1) == y).sum()
        losses = all_reduce_sum(torch.stack(losses).float()) / world_size()  # each step's loss on the whole batch
        if not losses.isfinite().all():
            first_bad = step - epoch_steps + (~losses.isfinite()).nonzero()[0].item() + 1
            raise NonFiniteLossError(first_bad, total_steps, epoch, checkpoint_path)
        train_acc = 100 * all_reduce_sum(correct).item() / (epoch_steps * recipe.batch_size)
        seconds = time.perf_counter() - start  # after the sync above, so a GPU's queued work is counted
        test_acc = evaluate(model, data.test_images, data.test_labels) if evaluate_each_epoch else None
        history.append({"epoch": epoch, "loss": losses.mean().item(), "train_acc": train_acc, "test_acc": test_acc,
                        "lr": triangular_lr(step - 1, total_steps, recipe), "seconds": seconds})
        if checkpoint_path is not None and is_main_process():
            save_checkpoint(model, checkpoint_path, optimizer=optimizer.state_dict(), epoch=epoch, step=step,
                            history=history, torch_rng=torch.get_rng_state(), generator=generator.get_state(),
                            recipe=asdict(recipe), train_images=len(data.train_images), config=config or {})
        if progress:
            print(format_epoch(history[-1]), flush=True)
    return history


def parameter_groups(model, recipe: Recipe) -> list[dict]:
    """The trainable parameters in two SGD groups: BatchNorm's, at bias_lr_scale times the lr, and the rest.

    airbench's finding: the BatchNorm shifts are few and want far larger steps than the conv weights. Their weight
    decay is divided by the same factor, so that lr * weight_decay, the decay per step, stays that of the others.
    """
    norms = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [dict(params=[p for p in trainable if id(p) not in norms], lr_scale=1.0, weight_decay=recipe.weight_decay),
            dict(params=[p for p in trainable if id(p) in norms], lr_scale=recipe.bias_lr_scale,
                 weight_decay=recipe.weight_decay / recipe.bias_lr_scale)]


def process_share(batch_size: int) -> slice:
    """This process's slice of every batch: all of it alone, 1/N of it among N processes."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(f"batch size {batch_size} does not split evenly over {n} processes: use a multiple of {n}")
    share = batch_size // n
    return slice(rank() * share, (rank() + 1) * share)


def restore(checkpoint: dict, model, optimizer, generator, recipe: Recipe, train_images: int):
    """Put back the weights, optimiser and random generators of a checkpoint; return its (epoch, step, history)."""
    if checkpoint["recipe"] != asdict(recipe):
        raise ConfigError(f"the checkpoint was trained with {Recipe(**checkpoint['recipe'])}, not {recipe}: "
                          f"resume with its own recipe")
    if checkpoint["train_images"] != train_images:
        raise ConfigError(f"the checkpoint was trained on {checkpoint['train_images']} images, not "
                          f"{train_images}: resume on the same data")
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    generator.set_state(checkpoint["generator"])
    return checkpoint["epoch"], checkpoint["step"], list(checkpoint["history"])


def format_epoch(entry: dict) -> str:
    test = "-" if entry["test_acc"] is None else f"{entry['test_acc']:.2f}%"
    return (f"epoch {entry['epoch']:2d}  loss {entry['loss']:.3f}  train {entry['train_acc']:.2f}%  "
            f"test {test}  lr {entry['lr']:.3f}  {entry['seconds']:.1f} s")


@torch.no_grad()
def predict(model, images, tta: bool = False, batch_size: int = 1000):
    """Logits (float32, on the CPU) for uint8 images, in eval mode and full precision; TTA adds the mirror."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        logits = model(x).float()
        if tta:
            logits = (logits + model(x.flip(-1)).float()) / 2
        out.append(logits.cpu())
    return torch.cat(out)


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    return 100 * (logits.argmax(1) == labels.cpu()).float().mean().item()


def evaluate(model, images, labels, tta: bool = False) -> float:
    """Top-1 accuracy in percent of `model` on uint8 images."""
    return accuracy(predict(model, images, tta), labels)


def save_checkpoint(model, path, **extra) -> Path:
    """Write {"architecture", "model_kwargs", "state_dict", **extra} atomically (temporary file, then rename): no
    half-written file.

    `extra` must hold only tensors and plain values (numbers, strings, lists, dicts) so that loading it
    with weights_only=True works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"architecture": type(model).__name__, "model_kwargs": model.model_kwargs, "state_dict": state,
                **extra}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path, device="cpu") -> dict:
    """What save_checkpoint wrote, read with weights_only=True: loading a file never runs code from it."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} does not exist") from error
    except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as error:  # what torch.load raises
        raise CheckpointError(f"{path} is not a checkpoint that loads safely: truncated, another kind of file, or "
                              f"holding objects besides tensors and plain values, which are never unpickled as that "
                              f"could run code ({type(error).__name__})") from error
    if not isinstance(checkpoint, dict) or not {"model_kwargs", "state_dict"} <= checkpoint.keys():
        raise CheckpointError(f"{path} is not a checkpoint of an S7 network: no model_kwargs and state_dict")
    return checkpoint


RESUME_KEYS = ("optimizer", "epoch", "step", "history", "torch_rng", "generator", "recipe", "train_images", "config")


def load_resumable(path) -> dict:
    """A checkpoint written by train(checkpoint_path=...), on the CPU, ready for train(resume_from=...)."""
    checkpoint = load_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} holds weights only, not a run to resume (no {', '.join(missing)}): "
                              f"resume from the last.pt that training writes beside s7net.pt")
    return checkpoint


def load_model(path, device="cpu"):
    """Rebuild the saved network, from a final or a resumable checkpoint, in eval mode.

    Checkpoints written before S7AirNet existed have no "architecture": they hold an S7Net.
    """
    checkpoint = load_checkpoint(path, device)
    model = build_model(checkpoint.get("architecture", "S7Net"), **checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def require_s7(model) -> None:
    """--check: refuse, before any training, a model that breaks the assignment's rules (accuracy comes later)."""
    failed = [check for check in check_s7(model, device=torch.device("cpu"))
              if not check.passed and check.name != "test accuracy"]
    if failed:
        raise ConfigError("the model fails the S7 checks: " + "; ".join(
            f"{check.name} is {check.measured}, required {check.required}" for check in failed))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


# What --resume takes from the checkpoint instead of the command line.
RUN_OPTIONS = ("preset", "epochs", "batch_size", "widths", "seed", "quick")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.train",
                                     description="Train an S7 network on CIFAR-10 and print the final test accuracy. "
                                                 "Under torchrun, one process per GPU (DistributedDataParallel).")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="network and training recipe (default fast: "
                                                                   "S7Net; full: S7AirNet)")
    parser.add_argument("--epochs", type=positive_int, help="override the preset's number of epochs")
    parser.add_argument("--batch-size", type=positive_int, help="override the preset's (global) batch size")
    parser.add_argument("--widths", type=positive_int, nargs=4, metavar="W",
                        help="channels in C1 C2 C3 C4 (default: the preset network's, S7Net 32 64 128 192, "
                             "S7AirNet 64 256 256 256)")
    parser.add_argument("--check", action="store_true",
                        help="stop before training when the model fails the S7 checks (parameters, RF, ...)")
    parser.add_argument("--data", help="data root holding cifar-10-batches-bin/ or -py/ (default $CIFAR10_ROOT "
                                       "or ./data; downloaded there when missing)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--out", help="folder for s7net.pt, history.json and last.pt, the state to resume from "
                                      "written after every epoch (default runs/latest, or the --resume folder)")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="smoke run: 2,048 training images, one epoch")
    parser.add_argument("--resume", metavar="LAST_PT", help="continue the run saved in this last.pt, with its "
                                                            "own recipe, widths, seed and data slice")
    parser.add_argument("--stop-after-epoch", type=positive_int, metavar="K",
                        help="stop after epoch K (the schedule still spans all epochs); go on later with --resume")
    return parser


def main(argv=None):
    """The command line. A user's mistake ends it with status 2 and one message, not a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in RUN_OPTIONS if getattr(args, name) is not None]
    if args.resume and given:
        parser.error(f"--resume continues a run with its own settings: drop {', '.join(given)}")
    try:
        with distributed_session() as device:
            return run(args, device)
    except (DatasetError, ConfigError, CheckpointError, NonFiniteLossError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def run(args, device):
    """Train, evaluate and save as the parsed command line says; return the final test accuracy (None if stopped)."""
    if args.resume:
        checkpoint = load_resumable(args.resume)
        recipe, model_kwargs = Recipe(**checkpoint["recipe"]), checkpoint["model_kwargs"]
        config = {"seed": 0, "quick": False, **checkpoint["config"]}
    else:
        overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None}
        checkpoint, recipe = None, replace(PRESETS[args.preset or "fast"], **overrides)
        model_kwargs = {"widths": args.widths} if args.widths else {}
        config = {"seed": args.seed or 0, "quick": bool(args.quick)}
    out = Path(args.out or (Path(args.resume).parent if args.resume else "runs/latest"))
    report = print if is_main_process() else (lambda *_, **__: None)
    report(describe_device(device) + (f"; {world_size()} processes (DistributedDataParallel)"
                                      if world_size() > 1 else ""))
    generator = seed_everything(config["seed"])
    model = build_model(recipe.architecture, **model_kwargs)
    if args.check:
        require_s7(model)
    data = load_cifar10(args.data)
    if config["quick"]:
        data, recipe = quick(data, recipe)
    report(f"{recipe.architecture}: {count_parameters(model):,} parameters; recipe: {recipe}")
    history = train(model, data, recipe, generator, device, checkpoint_path=out / "last.pt", resume_from=checkpoint,
                    stop_after_epoch=args.stop_after_epoch, config=config)
    if len(history) < recipe.epochs:
        report(f"stopped after epoch {len(history)} of {recipe.epochs}; go on with: "
               f"python -m helpers.train --resume {out / 'last.pt'}")
        return None
    test_acc = evaluate(model, data.test_images, data.test_labels, tta=recipe.tta)
    if is_main_process():
        save_checkpoint(model, out / "s7net.pt")
        (out / "history.json").write_text(json.dumps({"recipe": asdict(recipe), "seed": config["seed"],
                                                      "history": history, "test_acc": test_acc}, indent=1))
    report(f"final test accuracy: {test_acc:.2f}% (TTA {'on' if recipe.tta else 'off'}); saved {out / 's7net.pt'}")
    return test_acc


if __name__ == "__main__":
    main()
