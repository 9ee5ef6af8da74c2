"""The probe of empirical_rf: within positive_paths, a network is linear with positive weights, so that the input
gradient of one unit is non-zero exactly on its receptive field."""
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .graph import AXES, Trace
from .trace_ops import ACTIVATIONS, DROPOUTS, NORMS, WEIGHTED, canonical


class _PositivePaths(TorchFunctionMode):
    """Every path of the network carries the gradient, so that it is non-zero exactly on the field (see
    positive_paths)."""

    def __init__(self, adaptive=()):
        super().__init__()
        self.adaptive, self.calls = list(adaptive), 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = canonical(func)
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d") and self.calls < len(self.adaptive):
            self.calls += 1
            if self.adaptive[self.calls - 1] is not None:
                return F.avg_pool2d(args[0], *self.adaptive[self.calls - 1])
        if name in WEIGHTED:
            args, kwargs = list(args), dict(kwargs)
            weight = kwargs.pop("weight") if "weight" in kwargs else args.pop(1)
            bias = kwargs.pop("bias") if "bias" in kwargs else (args.pop(1) if len(args) > 1 else None)
            weight = distinct_positive(weight.shape, weight.dtype, weight.device) / weight[0].numel()
            return func(args[0], weight, None if bias is None else torch.zeros_like(bias), *args[1:], **kwargs)
        if name in ACTIVATIONS | NORMS | DROPOUTS:
            return args[0] if args else kwargs["input"]
        if name == "max_pool2d":
            return _average_pool(*args, **kwargs)
        if name == "adaptive_max_pool2d":
            if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
                raise ValueError("a max-pool whose indices the network uses has no average-pool equivalent")
            return F.adaptive_avg_pool2d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        if name in ("amax", "amin"):
            return torch.mean(*args, **kwargs)
        return func(*args, **kwargs)


def distinct_positive(shape, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Factors in [1, 2), one per pair of (output, input) channel, equal over a kernel's positions.

    Positive, so that no two paths cancel; unequal from channel to channel, so that no two channels carry the same
    values: with equal weights a channel norm's x - mean(x) is exactly 0 and passes no gradient. Steps of the
    golden ratio and of sqrt(2), taken modulo 1, repeat no value for any channel count."""
    rows = torch.arange(shape[0], dtype=dtype, device=device).view(-1, *[1] * (len(shape) - 1))
    columns = torch.arange(shape[1] if len(shape) > 1 else 1, dtype=dtype, device=device)
    columns = columns.view(1, -1, *[1] * (len(shape) - 2)) if len(shape) > 1 else columns
    factors = 1 + torch.remainder(rows * 0.6180339887 + columns * 0.4142135624, 1)
    return factors.expand(shape).clone()


def _average_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The average over a max-pool's windows: a max-pool sends the gradient to one element per window."""
    if return_indices:
        raise ValueError("a max-pool whose indices the network uses has no average-pool equivalent")
    kernel, dilation = torch.nn.modules.utils._pair(kernel_size), torch.nn.modules.utils._pair(dilation)
    stride = torch.nn.modules.utils._pair(stride if stride not in (None, []) else kernel_size)
    if dilation == (1, 1):
        return F.avg_pool2d(input, kernel, stride, padding, ceil_mode)
    if ceil_mode:
        raise ValueError("a dilated max-pool with ceil_mode has no average-pool equivalent")
    channels = input.shape[-3]
    weight = torch.full((channels, 1, *kernel), 1.0 / math.prod(kernel), dtype=input.dtype, device=input.device)
    return F.conv2d(input, weight, None, stride, padding, dilation, channels)


@contextmanager
def positive_paths(adaptive=()):
    """Within the block, the network is linear with positive weights, so an input gradient is non-zero exactly on
    the receptive field: every conv and linear weight is 1/fan-in times a factor from 1 to 2 that differs from channel
    to channel (distinct_positive), and every bias 0; activations, normalisations
    (their statistics are not part of the field), softmax and dropout are the identity, and max-pools average
    their windows. Module or functional, all are seen (a TorchFunctionMode).

    adaptive: for the adaptive pools in the order they run, the (kernel, stride) of an average pool to use
    instead, or None to keep it: an AdaptiveAvgPool2d(2) reads 2x2 of a 4x4 map, but half of a larger one."""
    with _PositivePaths(adaptive):
        yield


def nominal_windows(graph: Trace) -> list:
    """For each adaptive pool of the trace, the fixed windows it pools at the traced size (None: to 1x1, global at
    any size, or uneven windows no average pool has)."""
    windows = []
    for op in graph.ops:
        if op.func in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            steps = [op.steps[axis] for axis in AXES]
            exact = not any(step.whole or step.approximate for step in steps)
            windows.append((tuple(step.span for step in steps), tuple(step.stride for step in steps)) if exact
                           else None)
    return windows
