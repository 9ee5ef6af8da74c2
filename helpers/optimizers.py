"""Who trains what, at which learning rate: Muon the convolution filter banks (when the recipe has a muon_lr), SGD
everything else, and the schedule they all follow.

Every parameter group carries "initial_lr", its peak learning rate, set here from the recipe (lr, muon_lr, the
BatchNorm shifts' lr). The schedule is one factor from 0 to 1 (lr_factor), and set_learning_rates multiplies it onto
each group's initial_lr: the only place a learning rate is set.
"""
import torch
from torch import nn

from .muon import Muon, is_filter_bank
from .recipes import Recipe


def build_optimizers(model, recipe: Recipe) -> list[torch.optim.Optimizer]:
    """[SGD] or, with recipe.muon_lr, [SGD, Muon], for a recipe whose precision is decided.

    In fp16 both take the gradient scaler's inf check themselves (the fused SGD, and Muon), so a step needs no
    host sync: GradScaler.step would otherwise read each optimiser's inf flag back to the host.
    """
    fp16, banks = recipe.precision == "fp16", muon_banks(model, recipe)
    sgd = torch.optim.SGD(parameter_groups(model, recipe, banks), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=recipe.nesterov, fused=fp16 or None)
    if fp16:
        start_momentum_at_zero(sgd)
    if recipe.muon_lr is None:
        return [sgd]
    return [sgd, Muon([dict(params=banks, initial_lr=recipe.muon_lr, name="muon")], lr=recipe.muon_lr,
                      precision=recipe.precision)]


def start_momentum_at_zero(sgd: torch.optim.SGD) -> None:
    """Zeroed momentum buffers before the first step. The fused SGD makes them with torch.empty_like on its first
    step, and its kernel returns before writing them when fp16's scaler skips that step (an infinite gradient at
    the first loss scale): the next step would read whatever that memory held. From zero, the first real step
    computes what it would have (momentum x 0 + gradient)."""
    for group in sgd.param_groups:
        for p in group["params"]:
            if group["momentum"]:
                sgd.state[p]["momentum_buffer"] = torch.zeros_like(p)


def muon_banks(model, recipe: Recipe) -> list[torch.Tensor]:
    """The parameters Muon trains, decided in this one place: the filter banks when the recipe has a muon_lr,
    none otherwise."""
    return [p for p in model.parameters() if is_filter_bank(p)] if recipe.muon_lr is not None else []


def parameter_groups(model, recipe: Recipe, banks: list[torch.Tensor]) -> list[dict]:
    """The parameters SGD trains, in two groups: BatchNorm's ("norms"), at bias_lr_scale times the lr, and the rest
    ("weights"), the filter banks that Muon trains (muon_banks) excepted.

    airbench's finding: the BatchNorm shifts are few and want far larger steps than the conv weights. Their weight
    decay is divided by the same factor, so that lr * weight_decay, the decay per step, stays that of the others.
    """
    norms = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    muon = {id(p) for p in banks}
    trainable = [p for p in model.parameters() if p.requires_grad and id(p) not in muon]
    return [dict(params=[p for p in trainable if id(p) not in norms], initial_lr=recipe.lr,
                 weight_decay=recipe.weight_decay, name="weights"),
            dict(params=[p for p in trainable if id(p) in norms], initial_lr=recipe.lr * recipe.bias_lr_scale,
                 weight_decay=recipe.weight_decay / recipe.bias_lr_scale, name="norms")]


def lr_factor(step: int, total_steps: int, recipe: Recipe) -> float:
    """The schedule at this step, from 0 to 1, the fraction of each group's peak lr it trains at. Triangular: a
    linear warm-up over the first `warmup` fraction of the steps, then a linear decay to zero. Constant: 1
    throughout, as the PyTorch tutorial trains."""
    if recipe.schedule == "constant":
        return 1.0
    peak = max(1, round(recipe.warmup * total_steps))
    if step < peak:
        return (step + 1) / peak
    return max(0.0, (total_steps - step) / max(1, total_steps - peak))


def highest_lrs(optimizers, first_step: int, end_step: int, total_steps: int, recipe: Recipe) -> dict[str, float]:
    """{group name: the highest lr it had in steps first_step to end_step - 1}, for each group with parameters."""
    factor = max(lr_factor(step, total_steps, recipe) for step in range(first_step, end_step))
    return {group["name"]: factor * group["initial_lr"] for optimizer in optimizers for group in optimizer.param_groups
            if group["params"]}


def set_learning_rates(optimizers, factor: float) -> None:
    """Every group of every optimiser at `factor` (lr_factor) times its own initial_lr."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = factor * group["initial_lr"]


def optimizer_states(optimizers) -> dict:
    """What a checkpoint keeps of the optimisers: the SGD's state as "optimizer", Muon's (if any) as "muon"."""
    return dict(zip(("optimizer", "muon"), (optimizer.state_dict() for optimizer in optimizers)))


def load_optimizer_states(optimizers, checkpoint: dict) -> None:
    """The inverse of optimizer_states. How the optimisers compute (a fused SGD in fp16) stays as they were built
    for this run, which may go on in another precision than the checkpoint's, and so do their initial_lr (a
    checkpoint from before they had one kept its peak lrs in another form)."""
    for optimizer, key in zip(optimizers, ("optimizer", "muon")):
        built = [{k: group[k] for k in ("fused", "foreach", "initial_lr", "name") if k in group}
                 for group in optimizer.param_groups]
        optimizer.load_state_dict(checkpoint[key])
        for group, flags in zip(optimizer.param_groups, built):
            group.update(flags)
        for p, state in optimizer.state.items():  # torch loads any shapes: a wrong one would fail steps later
            if any(isinstance(v, torch.Tensor) and v.dim() and v.shape != p.shape for v in state.values()):
                raise ValueError(f"the saved {key} state holds a tensor that does not fit its parameter "
                                 f"{tuple(p.shape)}")
