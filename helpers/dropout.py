"""Dropout for anyone's network on a CPU, with the random bits drawn in bulk.

Students put dropout after every convolution, and on a CPU torch draws each dropout mask one element at a time
(`bernoulli_`, 32 random bits and a float comparison per element): on such a network that is a large share of the
training step (benchmarks/RESULTS.md, "Dropout on a CPU"). `cpu_dropout` draws the same kind of mask from 64-bit
random words cut into 16-bit ones, from the same seeded generator, and keeps each element with probability
1 - p to within 2^-16, scaling kept ones by the inverse of that probability, as dropout does.

`FastDropout` is a torch-function mode: while it is active, every F.dropout and torch.dropout call on a CPU tensor
in training takes this path, whether the network calls it in its forward or through nn.Dropout. Other calls,
other devices (a GPU draws its masks in parallel already) and evaluation pass through unchanged.
`bulk_dropout_while_training` enters it for a module's training forward, unless torch.compile is tracing it (the
compiled graph draws its masks in its own fused kernels).
"""
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

LEVELS = 1 << 16  # a 16-bit word per element: p is kept to within 1/65,536


def cpu_dropout(x: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
    """x with each element zeroed with probability p (to the nearest 1/65,536) and the rest scaled to keep the mean.

    The words are laid out in x's memory order (NCHW or channels-last alike), so every pass reads them in step."""
    drop = round(p * LEVELS)
    if drop == 0:
        return x
    if drop == LEVELS:
        return x.zero_() if inplace else torch.zeros_like(x)
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))  # dims from outermost to innermost in memory
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)
    bits = words.view(torch.int16)[:x.numel()].view([x.shape[d] for d in order])
    keep = bits.permute([order.index(d) for d in range(x.dim())]) >= drop - LEVELS // 2  # int16 runs -2^15..2^15-1
    # the mask holds 0 or the scale in x's dtype, as torch's own does: one multiply forward, one backward
    mask = torch.where(keep, torch.tensor(LEVELS / (LEVELS - drop), dtype=x.dtype), torch.tensor(0, dtype=x.dtype))
    return x.mul_(mask) if inplace else x * mask


# The dropout calls taken, with the names of their positional arguments.
SIGNATURES = {F.dropout: ("input", "p", "training", "inplace"), torch.dropout: ("input", "p", "train")}


class FastDropout(TorchFunctionMode):
    """F.dropout and torch.dropout on CPU tensors in training go through cpu_dropout; everything else as it was."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SIGNATURES:
            call = dict(zip(SIGNATURES[func], args), **kwargs)
            x, p = call["input"], call.get("p", 0.5)
            training = call.get("training", call.get("train", True))
            if training and x.device.type == "cpu" and isinstance(p, (int, float)) and 0 <= p <= 1:  # else torch's
                return cpu_dropout(x, p, call.get("inplace", False))
        return func(*args, **kwargs)


def bulk_dropout_while_training(module: nn.Module):
    """FastDropout for the training forward of `module`; nothing in evaluation or under torch.compile."""
    return FastDropout() if module.training and not torch.compiler.is_compiling() else nullcontext()
