"""The training loop, one for every network, preset and device: `train(model, data, recipe)`.

`train` reads top to bottom as the whole story of a run: the set-up, then for every batch the learning rate, the
forward pass, the backward pass and the optimiser steps, then each epoch's record, evaluation and checkpoint. The
helpers below it each do one thing it calls from one place: the epoch's record and what a checkpoint keeps to
resume. The recipe comes with its precision decided (helpers.runtime.precision.decide_precision), and the learning rates
are set by helpers.optimizers. The command line is helpers.train; the recipes, helpers.recipes.
"""
import itertools
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoints import CheckpointError, save_checkpoint
from .data import CIFAR10, train_batches
from .evaluation import evaluate
from .optimizers import (
    build_optimizers,
    highest_lrs,
    load_optimizer_states,
    lr_factor,
    optimizer_states,
    set_learning_rates,
)
from .errors import ConfigError, first_line
from .recipes import Recipe, epoch_count, recipe_from_dict, steps_per_epoch, training_steps
from .runtime.distributed import Distribution
from .runtime.precision import Precision


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stops, and that epoch is never saved."""

    def __init__(self, step: int, total_steps: int, epoch: int, checkpoint_path=None):
        kept = (f" {checkpoint_path} still holds the last good epoch." if checkpoint_path is not None
                and Path(checkpoint_path).exists() else "")
        super().__init__(f"the loss is not finite (NaN or infinity) at step {step} of {total_steps}, in epoch "
                         f"{epoch}: training stopped.{kept} Lower the learning rate or check the data.")
        self.step, self.epoch = step, epoch


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (model init) and return the generator that orders and augments the batches."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train(model, data: CIFAR10, recipe: Recipe, generator: torch.Generator = None, device=None, *,
          progress: bool = True, evaluate_each_epoch: bool = True, checkpoint_path=None, resume_from: dict = None,
          stop_after_epoch: int = None, config: dict = None) -> list[dict]:
    """Train `model` (a helpers.models.Network) on data.train_*; return the history, one dict per epoch.

    recipe: its precision decided (helpers.runtime.precision.decide_precision); "auto" is a ConfigError.
    Each entry has epoch, fraction (the part of an epoch it trained: below 1 for a fractional last one), loss,
    train_acc, test_acc (plain, no TTA; None when not evaluated), max_lr (the highest lr each parameter group had in
    it, by the group's name), seconds (the epoch's training time, evaluation excluded), precision, and step_loss and
    step_acc, each step's loss and training accuracy: the curves of a one-epoch run.

    checkpoint_path: where to write the state to resume from at the end of every epoch (see load_resumable),
    with `config` (plain values the caller needs to rebuild the run, such as the seed) stored as given.
    resume_from: such a loaded state; training goes on after its epoch exactly as if never interrupted.
    stop_after_epoch: return after this epoch, the schedule still spanning recipe.epochs, to resume later.
    A fractional recipe.epochs (1.5) ends the last epoch early, after its share of the steps.
    A non-finite loss raises NonFiniteLossError at the end of its epoch, before anything of it is written.
    Under torchrun (see helpers.runtime.distributed) each process trains on its own slice of every batch.
    """
    generator = generator or torch.Generator().manual_seed(0)
    share = Distribution.for_run(device, recipe.batch_size, recipe.sync_batchnorm)  # this process's part in it
    precision = Precision.for_run(share.device, recipe.precision, share.images_per_step, resumed=bool(resume_from))
    n_images = len(data.train_images)
    total_steps, per_epoch = training_steps(n_images, recipe), steps_per_epoch(n_images, recipe.batch_size)
    data = data.to(share.device)
    if resume_from is None:
        model.init_from_data(data.train_images)  # S7AirNet sets its whitening from the data; most networks nothing
    model.to(share.device, memory_format=torch.channels_last if recipe.channels_last else torch.preserve_format)
    if share.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch has one shape: cuDNN times its kernels once, then reuses
    optimizers = build_optimizers(model, recipe)
    done, step, history = restore(resume_from, model, optimizers, precision.scaler, generator, recipe, n_images) \
        if resume_from else (0, 0, [])
    net = share.wrap(model)
    net = torch.compile(net) if recipe.compile else net
    with precision.whole_run():
        for epoch in range(done + 1, min(epoch_count(recipe), stop_after_epoch or epoch_count(recipe)) + 1):
            net.train()
            start, losses, correct = time.perf_counter(), [], []
            batches = train_batches(data.train_images, data.train_labels, recipe.batch_size, generator,
                                    recipe.translate, recipe.flip, recipe.channels_last, share.rows,
                                    alternate_flip_epoch=epoch if recipe.alternate_flip else None)
            steps = min(per_epoch, total_steps - step)  # a fractional last epoch: fewer
            for x, y in progress_bar(itertools.islice(batches, steps), steps, epoch, progress and share.is_main):
                set_learning_rates(optimizers, lr_factor(step, total_steps, recipe))
                with precision.autocast:
                    logits = net(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing) * share.loss_weight
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                precision.scaler.scale(loss).backward()
                for optimizer in optimizers:
                    precision.scaler.step(optimizer)
                precision.scaler.update()
                step += 1
                losses.append(loss.detach())  # kept on the device: a .item() per step would make a GPU wait
                correct.append((logits.argmax(1) == y).sum())
            history.append(epoch_record(epoch, losses, correct, start, step, total_steps, per_epoch, recipe, share,
                                        optimizers, checkpoint_path))
            if evaluate_each_epoch and share.is_main:  # the others would compute the same number
                history[-1]["test_acc"] = evaluate(model, data.test_images, data.test_labels)
            if checkpoint_path is not None and share.is_main:
                save_checkpoint(model, checkpoint_path, **resumable_state(optimizers, precision.scaler, generator,
                                                                          recipe, history, step, n_images, config))
            if progress and share.is_main:
                print(format_epoch(history[-1]), flush=True)
    return history


def progress_bar(batches, steps: int, epoch: int, progress: bool):
    """A bar for a person at a terminal only: in a notebook or a log file it leaves hundreds of fragments, and the
    line printed per epoch says what matters. A few updates per epoch are enough."""
    return tqdm(batches, total=steps, desc=f"epoch {epoch}", leave=False, mininterval=5,
                disable=not (progress and sys.stderr.isatty()))


def epoch_record(epoch: int, losses, correct, start: float, step: int, total_steps: int, per_epoch: int,
                 recipe: Recipe, share: Distribution, optimizers, checkpoint_path) -> dict:
    """The history entry of an epoch from its steps' losses and right answers, summed over the processes; the
    clock stops after that sum has waited for the device. NonFiniteLossError if any loss is not finite."""
    losses = share.sum(torch.stack(losses).float()) / share.processes  # each step's loss on the whole batch
    right = share.sum(torch.stack(correct)).tolist()  # whole numbers: no float64 on the device (MPS has none)
    seconds = time.perf_counter() - start
    if not losses.isfinite().all():
        first_bad = step - len(right) + (~losses.isfinite()).nonzero()[0].item() + 1
        raise NonFiniteLossError(first_bad, total_steps, epoch, checkpoint_path)
    step_acc = [100 * n / recipe.batch_size for n in right]
    return {"epoch": epoch, "fraction": len(right) / per_epoch, "loss": losses.mean().item(),
            "train_acc": sum(step_acc) / len(step_acc), "test_acc": None,
            "max_lr": highest_lrs(optimizers, step - len(right), step, total_steps, recipe), "seconds": seconds,
            "precision": recipe.precision, "step_loss": losses.tolist(), "step_acc": step_acc}


def format_epoch(entry: dict) -> str:
    """The line printed after each epoch: a fractional last epoch says what part of one it was, and the learning
    rates are the highest each parameter group had in it (they fall to zero by the last step)."""
    test = "-" if entry["test_acc"] is None else f"{entry['test_acc']:.2f}%"
    part = f" ({entry['fraction']:.2g} of one)" if entry["fraction"] < 1 else ""
    rates = ", ".join(f"{group} {lr:.2g}" for group, lr in entry["max_lr"].items())
    return (f"epoch {entry['epoch']:2d}{part}  loss {entry['loss']:.3f}  train {entry['train_acc']:.2f}%  "
            f"test (plain) {test}  max lr {rates}  {entry['seconds']:.1f} s")


def resumable_state(optimizers, scaler, generator, recipe: Recipe, history, step: int, train_images: int,
                    config: dict = None) -> dict:
    """Everything besides the weights that a run needs to go on exactly where it stopped (see restore)."""
    return dict(**optimizer_states(optimizers), scaler=scaler.state_dict(), epoch=history[-1]["epoch"], step=step,
                history=history, torch_rng=torch.get_rng_state(), generator=generator.get_state(),
                recipe=asdict(recipe), train_images=train_images, config=config or {})


def restore(checkpoint: dict, model, optimizers, scaler, generator, recipe: Recipe, train_images: int):
    """Put back the weights, optimisers, loss scale and random generators of a checkpoint; return its (epoch, step,
    history). The recipe must be the checkpoint's own, how it computes excepted: a run may go on in another
    precision, compiled or not."""
    saved = recipe_from_dict(checkpoint["recipe"])
    if replace(saved, precision=recipe.precision, compile=recipe.compile) != recipe:
        raise ConfigError(f"the checkpoint was trained with {saved}, not {recipe}: resume with its own recipe")
    if checkpoint["train_images"] != train_images:
        raise ConfigError(f"the checkpoint was trained on {checkpoint['train_images']} images, not "
                          f"{train_images}: resume on the same data")
    try:
        model.load_state_dict(checkpoint["state_dict"])
        load_optimizer_states(optimizers, checkpoint)
        if checkpoint.get("scaler") and recipe.precision == "fp16":  # only an fp16 run's scaler has a state to go on
            scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        generator.set_state(checkpoint["generator"])
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        raise CheckpointError(f"the checkpoint's saved state does not fit this run: {first_line(error)}") from None
    return checkpoint["epoch"], checkpoint["step"], list(checkpoint["history"])
