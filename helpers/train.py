"""Training recipe, train/evaluate loops, checkpoints, and the command line (`python -m helpers.train`).

The notebook and the command line call the same functions; there is one training loop.
"""
import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import load_cifar10, steps_per_epoch, to_float, train_batches
from .device import describe_device, pick_device
from .models import S7Net, count_parameters


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the model and the seed; each default earns its place."""

    epochs: int = 4
    batch_size: int = 512        # big batches keep the CPU's matrix units busy; lr is matched to it
    lr: float = 0.2              # peak of the triangular schedule (SGD, Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.25         # fraction of steps spent rising linearly from 0 to lr, then linear decay to 0
    label_smoothing: float = 0.2  # softer targets: better calibrated and more accurate on short schedules
    translate: int = 2           # augmentation: random shifts up to this many pixels (reflect padding)
    flip: bool = True            # augmentation: random horizontal flips
    bf16: bool = True            # bfloat16 autocast: ~2x faster convs on CPUs with AVX512-BF16 and on GPUs
    channels_last: bool = True   # NHWC memory layout, the one oneDNN and cuDNN convolutions prefer
    tta: bool = True             # test-time augmentation: average the logits of each image and its mirror


PRESETS = {"fast": Recipe()}


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


def train(model, data, recipe: Recipe = Recipe(), generator: torch.Generator = None, device=None,
          progress: bool = True, evaluate_each_epoch: bool = True):
    """Train `model` on data.train_*; return the history, one dict per epoch.

    Each entry has epoch, loss, train_acc, test_acc (plain, no TTA; None when not evaluated), lr and
    seconds (training time of the epoch, evaluation excluded).
    """
    device = device or pick_device()
    generator = generator or torch.Generator().manual_seed(0)
    data = data.to(device)
    if len(data.train_images) < recipe.batch_size:
        raise ValueError(f"batch size {recipe.batch_size} is larger than the {len(data.train_images)} "
                         f"training images: lower it or use more data")
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * steps_per_epoch(len(data.train_images), recipe.batch_size)
    step, history = 0, []
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        batches = train_batches(data.train_images, data.train_labels, recipe.batch_size, generator,
                                recipe.translate, recipe.flip, recipe.channels_last)
        for x, y in tqdm(batches, total=total_steps // recipe.epochs, desc=f"epoch {epoch}", leave=False,
                         disable=not progress):
            for group in optimizer.param_groups:
                group["lr"] = triangular_lr(step, total_steps, recipe)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            # Accumulate on the device: a .item() per step would make a GPU wait for every batch.
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        seconds = time.perf_counter() - start
        test_acc = evaluate(model, data.test_images, data.test_labels) if evaluate_each_epoch else None
        history.append({"epoch": epoch, "loss": loss_sum.item() / seen, "train_acc": 100 * correct.item() / seen,
                        "test_acc": test_acc, "lr": triangular_lr(step - 1, total_steps, recipe),
                        "seconds": seconds})
        if progress:
            print(format_epoch(history[-1]), flush=True)
    return history


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


def evaluate(model, images, labels, tta: bool = False) -> float:
    """Top-1 accuracy in percent."""
    predictions = predict(model, images, tta).argmax(1)
    return 100 * (predictions == labels.cpu()).float().mean().item()


def save_checkpoint(model, path) -> Path:
    """Write {"model_kwargs", "state_dict"} atomically (temporary file, then rename): no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model_kwargs": model.model_kwargs, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def load_model(path, device="cpu") -> S7Net:
    """Rebuild the saved S7Net; weights_only=True never unpickles code from the file."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = S7Net(**checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.train",
                                     description="Train S7Net on CIFAR-10 and print the final test accuracy.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast", help="training recipe")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--data", help="data root holding cifar-10-batches-bin/ or -py/ (default $CIFAR10_ROOT "
                                       "or ./data; downloaded there when missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/latest", help="folder for s7net.pt and history.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,048 training images, one epoch")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None}
    recipe = replace(PRESETS[args.preset], **overrides)

    device = pick_device()
    print(describe_device(device))
    data = load_cifar10(args.data)
    if args.quick:
        data, recipe = quick(data, recipe)
    generator = seed_everything(args.seed)
    model = S7Net()
    print(f"S7Net: {count_parameters(model):,} parameters; recipe: {recipe}")
    history = train(model, data, recipe, generator, device)
    test_acc = evaluate(model, data.test_images, data.test_labels, tta=recipe.tta)
    out = Path(args.out)
    save_checkpoint(model, out / "s7net.pt")
    (out / "history.json").write_text(json.dumps({"recipe": asdict(recipe), "seed": args.seed,
                                                  "history": history, "test_acc": test_acc}, indent=1))
    print(f"final test accuracy: {test_acc:.2f}% (TTA {'on' if recipe.tta else 'off'}); saved {out / 's7net.pt'}")
    return test_acc


if __name__ == "__main__":
    main()
