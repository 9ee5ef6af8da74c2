"""The training loop: one for every network, preset and device (the command line is helpers.cli).

The notebook, `python -m helpers.train` and the benchmark call the same `train`; what it trains with comes from
helpers.recipes, how it saves from helpers.checkpoints, and the arithmetic from helpers.precision.
"""
import copy
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoints import save_checkpoint
from .data import steps_per_epoch, to_float, train_batches
from .device import configure_backend, pick_device
from .difficulty import ImageDifficulty, images_kept
from .distributed import all_reduce_sum, distribute, is_main_process, rank, world_size
from .evaluation import evaluate
from .muon import Muon, is_filter_bank
from .precision import CPU_CANDIDATES, autocast, fastest, fixed_choice, grad_scaler, unsupported_reason
from .recipes import Recipe, recipe_from_dict

PROBE_STEPS = 2  # timed training steps per candidate precision, after one warm-up step


class ConfigError(ValueError):
    """Settings that do not fit together (batch size, data, processes, a resumed run); the message says which."""


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


def learning_rate(step: int, total_steps: int, recipe: Recipe) -> float:
    """Triangular: a linear warm-up to recipe.lr over the first `warmup` fraction of steps, then a linear decay to
    zero. Constant: recipe.lr throughout, as the PyTorch tutorial trains."""
    if recipe.schedule == "constant":
        return recipe.lr
    peak = max(1, round(recipe.warmup * total_steps))
    if step < peak:
        return recipe.lr * (step + 1) / peak
    return recipe.lr * max(0.0, (total_steps - step) / max(1, total_steps - peak))


def train(model, data, recipe: Recipe = Recipe(), generator: torch.Generator = None, device=None,
          progress: bool = True, evaluate_each_epoch: bool = True, checkpoint_path=None, resume_from: dict = None,
          stop_after_epoch: int = None, config: dict = None):
    """Train `model` on data.train_*; return the history, one dict per epoch.

    Each entry has epoch, loss, train_acc, test_acc (plain, no TTA; None when not evaluated), lr, seconds
    (training time of the epoch, evaluation excluded), precision (the one "auto" chose, or the recipe's), and
    step_loss and step_acc, each step's loss and training accuracy: the curves of a one-epoch run.

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
    configure_backend(device)
    progress = progress and is_main_process()
    recipe = with_precision(recipe, model, device, resume_from, part, report=print if progress else None)
    optimizers = build_optimizers(model, recipe)
    scaler = grad_scaler(device, recipe.precision)
    difficulty = ImageDifficulty(len(data.train_images), device) if recipe.skip_easiest else None
    done, step, history = 0, 0, []
    if resume_from is not None:
        done, step, history = restore(resume_from, model, optimizers, scaler, generator, recipe,
                                      len(data.train_images), difficulty)
    try:
        net = distribute(model, device, recipe.sync_batchnorm)
    except ValueError as error:  # SyncBatchNorm asked for where there is no GPU
        raise ConfigError(str(error)) from error
    epochs_steps = steps_per_epochs(len(data.train_images), recipe)
    total_steps = sum(epochs_steps)
    with whitening_bias_handed_back(model):
        for epoch in range(done + 1, min(recipe.epochs, stop_after_epoch or recipe.epochs) + 1):
            if whitening_bias_changed(model, epoch, recipe):
                net = distribute(model, device, recipe.sync_batchnorm)  # DDP hooks only the parameters that learn
            net.train()
            start = time.perf_counter()
            epoch_steps = epochs_steps[epoch - 1]
            losses, correct = [], []
            subset = difficulty.images_to_train(recipe.skip_easiest) if difficulty and epoch > 1 else None
            batches = train_batches(data.train_images, data.train_labels, recipe.batch_size, generator,
                                    recipe.translate, recipe.flip, recipe.channels_last, part,
                                    alternate_flip_epoch=epoch if recipe.alternate_flip else None, subset=subset)
            # A bar for a person at a terminal only: in a notebook or a log file it leaves hundreds of fragments, and
            # the line printed per epoch says what matters. mininterval: a few updates per epoch are enough.
            for x, y, index in tqdm(batches, total=epoch_steps, desc=f"epoch {epoch}", leave=False,
                                    disable=not (progress and sys.stderr.isatty()), mininterval=5):
                for group in (group for optimizer in optimizers for group in optimizer.param_groups):
                    group["lr"] = learning_rate(step, total_steps, recipe) * group["lr_scale"]
                loss, logits = train_step(net, x, y, optimizers, scaler, recipe, device)
                step += 1
                if difficulty:
                    difficulty.record(index, logits, y)
                # Kept on the device: a .item() per step would make a GPU wait for every batch.
                losses.append(loss.detach())
                correct.append((logits.argmax(1) == y).sum())
            losses = all_reduce_sum(torch.stack(losses).float()) / world_size()  # each step's loss on the whole batch
            if not losses.isfinite().all():
                first_bad = step - epoch_steps + (~losses.isfinite()).nonzero()[0].item() + 1
                raise NonFiniteLossError(first_bad, total_steps, epoch, checkpoint_path)
            step_acc = 100 * all_reduce_sum(torch.stack(correct).double()) / recipe.batch_size
            if difficulty:
                difficulty.end_epoch()
            seconds = time.perf_counter() - start  # after the sync above, so a GPU's queued work is counted
            test_acc = evaluate(model, data.test_images, data.test_labels) if evaluate_each_epoch else None
            history.append({"epoch": epoch, "loss": losses.mean().item(), "train_acc": step_acc.mean().item(),
                            "test_acc": test_acc, "lr": learning_rate(step - 1, total_steps, recipe),
                            "seconds": seconds, "precision": recipe.precision,
                            "step_loss": losses.tolist(), "step_acc": step_acc.tolist()})
            if checkpoint_path is not None and is_main_process():
                save_checkpoint(model, checkpoint_path, **optimizer_states(optimizers), scaler=scaler.state_dict(),
                                epoch=epoch, step=step, history=history, torch_rng=torch.get_rng_state(),
                                generator=generator.get_state(), recipe=asdict(recipe),
                                difficulty=difficulty.state_dict() if difficulty else None,
                                train_images=len(data.train_images), config=config or {})
            if progress:
                print(format_epoch(history[-1]), flush=True)
    return history


def steps_per_epochs(n_images: int, recipe: Recipe) -> list[int]:
    """How many steps each epoch trains: all n_images in the first, and after it all but the skipped easiest."""
    later = images_kept(n_images, recipe.skip_easiest)
    return [steps_per_epoch(n, recipe.batch_size) for n in [n_images] + [later] * (recipe.epochs - 1)]


@contextmanager
def whitening_bias_handed_back(model):
    """S7AirNet's whitening bias learns again once training ends, by error too: the model is handed back with every
    parameter the optimiser had learning (a caller that trains it again, or saves it, finds it as it came)."""
    try:
        yield
    finally:
        if hasattr(model, "learn_whitening_bias"):
            model.learn_whitening_bias(True)


def whitening_bias_changed(model, epoch: int, recipe: Recipe) -> bool:
    """Let S7AirNet's whitening bias learn in the recipe's first whitening_bias_epochs epochs only; True when
    that changed it this epoch (DistributedDataParallel must then wrap the model again)."""
    if recipe.whitening_bias_epochs is None or not hasattr(model, "learn_whitening_bias"):
        return False
    return model.learn_whitening_bias(epoch <= recipe.whitening_bias_epochs)


def train_step(net, x, y, optimizers, scaler, recipe: Recipe, device):
    """One step of every optimiser on a batch, in the recipe's precision; returns the loss and the logits."""
    with autocast(device, recipe.precision):
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    for optimizer in optimizers:
        scaler.step(optimizer)
    scaler.update()
    return loss, logits


def with_precision(recipe: Recipe, model, device, resume_from=None, part=slice(None), report=None) -> Recipe:
    """The recipe with "auto" replaced by the precision to train in; ConfigError for one the device lacks."""
    if recipe.precision == "auto" and resume_from is not None:
        return replace(recipe, precision=recipe_from_dict(resume_from["recipe"]).precision)  # as the run began
    if recipe.precision != "auto":
        bf16_native = device.type != "cuda" or fixed_choice(device) == "bf16"
        reason = unsupported_reason(device.type, recipe.precision, cuda_bf16_native=bf16_native)
        if reason:
            raise ConfigError(reason)
        return recipe
    choice = fixed_choice(device)
    if choice is None:
        batch = len(range(recipe.batch_size)[part])
        # Summed over the processes of a torchrun job, so that every process makes the same choice.
        rates = {p: all_reduce_sum(torch.tensor(measure_step_rate(model, replace(recipe, precision=p), batch,
                                                                  device))).item() for p in CPU_CANDIDATES}
        choice = fastest(rates)
        detail = ", ".join(f"{p} {rate:,.0f} img/s" for p, rate in rates.items())
        message = f"precision auto: {choice} ({detail}; {PROBE_STEPS} training steps each at batch {batch})"
    else:
        message = f"precision auto: {choice} on {device.type}"
    if report:
        report(message)
    return replace(recipe, precision=choice)


def measure_step_rate(model, recipe: Recipe, batch_size: int, device) -> float:
    """Training images per second of a copy of `model` in the recipe's precision, on made-up images: the run's
    model, optimiser and random state stay untouched."""
    probe = copy.deepcopy(model).train()
    make = torch.Generator(device="cpu").manual_seed(0)
    x = to_float(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=make).to(device),
                 recipe.channels_last)
    y = torch.randint(0, 10, (batch_size,), generator=make).to(device)
    optimizers = build_optimizers(probe, replace(recipe, lr=1e-3))
    scaler = grad_scaler(device, recipe.precision)
    train_step(probe, x, y, optimizers, scaler, recipe, device)  # warm-up: kernels chosen, memory allocated
    start = time.perf_counter()
    for _ in range(PROBE_STEPS):
        loss, _ = train_step(probe, x, y, optimizers, scaler, recipe, device)
    loss.item()  # waits for a GPU to finish
    return PROBE_STEPS * batch_size / (time.perf_counter() - start)


def build_optimizers(model, recipe: Recipe) -> list[torch.optim.Optimizer]:
    """SGD for every trainable parameter, or, with recipe.muon_lr, Muon for the filter banks and SGD for the rest.
    Each group's "lr_scale" is its peak lr over recipe.lr: the training loop sets lr = schedule x lr_scale."""
    sgd = torch.optim.SGD(parameter_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=recipe.nesterov)
    if recipe.muon_lr is None:
        return [sgd]
    return [sgd, Muon([dict(params=muon_banks(model, recipe), lr_scale=recipe.muon_lr / recipe.lr)],
                      lr=recipe.muon_lr)]


def muon_banks(model, recipe: Recipe) -> list[torch.Tensor]:
    """The parameters Muon trains, decided in this one place: the filter banks when the recipe has a muon_lr,
    none otherwise. SGD trains every other trainable parameter."""
    return [p for p in model.parameters() if is_filter_bank(p)] if recipe.muon_lr is not None else []


def optimizer_states(optimizers) -> dict:
    """What a checkpoint keeps of the optimisers: the SGD's state as "optimizer", Muon's (if any) as "muon"."""
    return dict(zip(("optimizer", "muon"), (optimizer.state_dict() for optimizer in optimizers)))


def parameter_groups(model, recipe: Recipe) -> list[dict]:
    """The parameters SGD trains, in two groups: BatchNorm's, at bias_lr_scale times the lr, and the rest (the
    filter banks excepted when Muon trains them).

    airbench's finding: the BatchNorm shifts are few and want far larger steps than the conv weights. Their weight
    decay is divided by the same factor, so that lr * weight_decay, the decay per step, stays that of the others.
    """
    norms = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    muon = {id(p) for p in muon_banks(model, recipe)}
    trainable = [p for p in model.parameters() if p.requires_grad and id(p) not in muon]
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


def restore(checkpoint: dict, model, optimizers, scaler, generator, recipe: Recipe, train_images: int,
            difficulty: ImageDifficulty = None):
    """Put back the weights, optimisers, random generators and image difficulties of a checkpoint; return its
    (epoch, step, history)."""
    if recipe_from_dict(checkpoint["recipe"]) != recipe:
        raise ConfigError(f"the checkpoint was trained with {recipe_from_dict(checkpoint['recipe'])}, not "
                          f"{recipe}: resume with its own recipe")
    if checkpoint["train_images"] != train_images:
        raise ConfigError(f"the checkpoint was trained on {checkpoint['train_images']} images, not "
                          f"{train_images}: resume on the same data")
    model.load_state_dict(checkpoint["state_dict"])
    for optimizer, state in zip(optimizers, (checkpoint["optimizer"], checkpoint.get("muon"))):
        optimizer.load_state_dict(state)
    if checkpoint.get("scaler"):  # only an fp16 run's scaler has a state
        scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["torch_rng"])
    generator.set_state(checkpoint["generator"])
    if difficulty:
        difficulty.load_state_dict(checkpoint["difficulty"])
    return checkpoint["epoch"], checkpoint["step"], list(checkpoint["history"])


def format_epoch(entry: dict) -> str:
    test = "-" if entry["test_acc"] is None else f"{entry['test_acc']:.2f}%"
    return (f"epoch {entry['epoch']:2d}  loss {entry['loss']:.3f}  train {entry['train_acc']:.2f}%  "
            f"test {test}  lr {entry['lr']:.3f}  {entry['seconds']:.1f} s")


if __name__ == "__main__":  # `python -m helpers.train`: the command line lives in helpers.cli
    from .cli import main
    main()
