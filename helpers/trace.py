"""One forward pass recorded as the graph of what it computes: every torch function and tensor method that runs, with
the tensors flowing between them, each op named by the module it runs in.

Why a TorchFunctionMode: it sees every call at run time, with the real tensors, whatever the Python around it does.
torch.fx traces symbolically and fails on forward code that branches on data or shapes; module hooks see modules
only, so F.max_pool2d, x.mean((2, 3)), x + y and torch.cat are invisible to them. Module forward hooks are still
used, only to name each op by the module whose forward runs it ("c3.0.conv"; "layer1.add" for an op a block's own
forward calls; "max_pool2d#2" for the second one the network's forward calls itself).

The graph knows, for every tensor, which of its dimensions are the image's height and width ("H", "W", or "HW" once
view(N, C, -1) merges them) and how large the map is; for every op, how its output positions read its input's
(a `Step` per axis: kernel span, stride, offset), which is all helpers.receptive_field needs; and where the
spatial map ends (`Trace.stage`): the global pool in any of its forms, or a flatten, or a conv as large as the map.
"""
import copy
import itertools
import math
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

AXES = ("H", "W")
SPATIAL = ("H", "W", "HW")


class Step(NamedTuple):
    """How one axis of an op's output reads its input along that axis: output element i reads input elements
    i * stride - offset up to i * stride - offset + span - 1 (a convolution's window, in input elements)."""
    span: int | Fraction = 1
    stride: int | Fraction = 1
    offset: int | Fraction = 0
    whole: bool = False  # every output element reads the whole input axis: a global reduction
    approximate: str = ""  # why the window is only estimated; "" when exact


KEEP, WHOLE = Step(), Step(whole=True)


class Pooling(NamedTuple):
    """A reduction of a map over its height and width (GAP, global max-pool, x.sum((2, 3)), or part of one)."""
    kind: str  # how positions combine: "mean", "sum", "max", ...
    op: "Op"  # the op that began it (the first of x.mean(3).mean(2))
    source: "Value"  # the map it reduces
    axes: frozenset  # the axes reduced so far
    positions: int  # how many positions each output combines
    covers: bool  # every position of the map (an AvgPool2d(4) on a 5x5 map covers 16 of 25)


@dataclass(eq=False)
class Value:
    """A tensor of the forward pass as the graph sees it."""
    index: int
    shape: tuple
    producer: "Op | None"  # None for the input and for tensors from outside the forward (weights, buffers)
    dims: tuple  # per dimension: "H", "W", "HW" (both, flattened) or None
    grid: tuple  # (height, width) of the map: 1 along an axis that is reduced or absent
    constant: bool  # depends on no input pixel
    pooling: Pooling | None = None
    tensor: torch.Tensor | None = field(default=None, repr=False)  # kept alive, so that ids stay unique

    @property
    def is_map(self) -> bool:
        """A map: some height or width larger than 1 still indexes it."""
        return not self.constant and any(label in SPATIAL and size > 1 for label, size in zip(self.dims, self.shape))

    @property
    def size_text(self) -> str:
        return f"{self.grid[0]}x{self.grid[1]}"


@dataclass(eq=False)
class Op:
    """One call of a torch function or tensor method in the forward pass."""
    index: int
    name: str  # for people: the module it runs in, or module.function for an op a module's own forward calls
    func: str  # the function: "conv2d", "max_pool2d", "mean", "add", "view", ...
    module: nn.Module | None  # the innermost module running it (None: the network's own forward, or no module)
    call: int  # which module call it belongs to (ops of one call share it)
    inputs: list  # Values: every tensor argument
    outputs: list  # Values
    params: dict  # the arguments that matter: kernel, stride, padding, dilation, groups, channels, dims
    steps: dict | None  # {"H": Step, "W": Step} from inputs[base]; None: element-wise (union of the inputs)
    base: int = 0  # which input the steps read

    @property
    def map_input(self) -> Value | None:
        return self.inputs[self.base] if self.inputs else None

    @property
    def kind(self) -> str:
        return type(self.module).__name__ if self.module is not None else self.func


class OutputStage(NamedTuple):
    """Where the spatial map ends and the output stage begins."""
    op: Op  # the op after which no map is left: the global pool, a flatten, a conv as large as the map
    first: Op  # the op that began it (the first of x.mean(3).mean(2); `op` otherwise)
    map: Value  # the map it reads: the network's receptive field is that of one unit of this map
    how: str  # "mean", "sum", "max" (pooling kinds), "flatten", "conv", or the function's name
    covers: bool  # it reads every position of the map
    head: list  # the ops after it, in the order they run


@dataclass
class Trace:
    """The graph of one forward pass: ops in the order they ran, the input, the outputs."""
    ops: list
    input: Value
    outputs: list
    input_shape: tuple

    def ancestors(self, values) -> set:
        """The ops that compute `values` (their producers, theirs, ...)."""
        seen, todo = set(), [v.producer for v in values if v.producer is not None]
        while todo:
            op = todo.pop()
            if op.index not in seen:
                seen.add(op.index)
                todo.extend(v.producer for v in op.inputs if v.producer is not None)
        return seen

    def descendants(self, op: Op) -> set:
        """The ops that read what `op` computes, directly or not."""
        reached, found = {id(v) for v in op.outputs}, set()
        for later in self.ops[op.index + 1:]:
            if any(id(v) in reached for v in later.inputs):
                found.add(later.index)
                reached.update(id(v) for v in later.outputs)
        return found

    def consumers(self, value: Value) -> list:
        return [op for op in self.ops if any(v is value for v in op.inputs)]

    @cached_property
    def stage(self) -> OutputStage | None:
        """The first op after which no map is left on any path to the output, and what it reads (see OutputStage).
        None when the network returns a map (no output stage). A reduction whose result goes back into a map
        (squeeze-and-excitation) is no output stage: its maps live on."""
        needed = self.ancestors(self.outputs)
        for op in self.ops:
            source = op.map_input
            if op.index not in needed or source is None or not source.is_map or not op.outputs \
                    or op.outputs[0].is_map or op.outputs[0].constant:
                continue
            later = self.descendants(op)
            if any(out.is_map for index in later for out in self.ops[index].outputs):
                continue
            pooling = op.outputs[0].pooling
            head = [self.ops[index] for index in sorted(later)]
            if pooling is not None:
                kinds = {out.pooling.kind for later_op in head for out in later_op.outputs
                         if out.pooling is not None and out.pooling.op is pooling.op}
                kind = "mean" if pooling.kind == "sum" and "mean" in kinds else pooling.kind  # sum / positions
                return OutputStage(op, pooling.op, pooling.source, kind, pooling.covers, head)
            if op.func == "conv2d":
                covers = all(step.span - step.offset >= n for step, n in zip(op.steps.values(), source.grid))
                return OutputStage(op, op, source, "conv", covers, head)
            how = "flatten" if op.func in RESHAPES else op.func
            return OutputStage(op, op, map_of(source) or source, how, True, head)
        return None

    @property
    def probed_map(self) -> Value:
        """The map whose one unit's field is the network's receptive field: the one the output stage reads, or the
        network's output when it has no output stage."""
        if self.stage is not None:
            return self.stage.map
        return self.outputs[0] if self.outputs else self.input


def map_of(value: Value | None) -> Value | None:
    """The map (a tensor indexed by both height and width) that `value` is, or was reshaped or reduced from."""
    while value is not None:
        if "H" in value.dims and "W" in value.dims:
            return value
        value = value.producer.map_input if value.producer is not None else None
    return None


# ---- how each function reads its arguments ---------------------------------------------------------------------

def canonical(func) -> str:
    """A function's name, the same for its spellings: __add__, __iadd__, add_ and torch.add are all "add"; __radd__
    keeps its r ("rsub", "rdiv": the tensor is the right operand)."""
    name = getattr(func, "__name__", type(func).__name__)
    if name == "__get__":  # a property: x.data, x.T
        return getattr(getattr(func, "__self__", None), "__name__", "get")
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith("i") and name[1:] in DUNDER:
            name = name[1:]
        if name.startswith("r") and name[1:] in DUNDER:
            return "r" + DUNDER[name[1:]] if name[1:] in ("sub", "truediv", "div", "floordiv", "pow", "mod") \
                else DUNDER[name[1:]]
        return DUNDER.get(name, name)
    return name.lstrip("_").removesuffix("_with_indices").rstrip("_")  # relu_ is relu, in place


DUNDER = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "div": "div", "floordiv": "floor_divide",
          "matmul": "matmul", "pow": "pow", "mod": "remainder", "neg": "neg", "getitem": "getitem",
          "setitem": "setitem", "and": "bitwise_and", "or": "bitwise_or", "abs": "abs"}
RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as",
            "ravel"}
PERMUTES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", "T", "mT", "adjoint"}
REDUCTIONS = {"mean": "mean", "nanmean": "mean", "sum": "sum", "nansum": "sum", "amax": "max", "max": "max",
              "amin": "min", "min": "min", "logsumexp": "logsumexp", "std": "std", "var": "var", "norm": "norm",
              "prod": "prod", "median": "median", "nanmedian": "median"}
SPATIAL_MIXERS = {"roll", "flip", "fliplr", "flipud", "rot90", "cumsum", "cumprod", "unfold", "fold"}


def _pair(value) -> tuple | None:
    """(height, width) from an int, a pair, a torch.Size or a tensor; None for a missing one (stride=None)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1])) if len(value) else None
    return int(value), int(value)


def _steps(kernel, stride, padding, dilation=(1, 1)) -> dict:
    return {axis: Step(d * (k - 1) + 1, s, p) for axis, k, s, p, d in zip(AXES, kernel, stride, padding, dilation)}


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    kernel, dilation = tuple(weight.shape[-2:]), _pair(dilation)
    if isinstance(padding, str):  # "valid", or "same": the total d * (k - 1), its smaller half before
        padding = (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    params = {"kernel": kernel, "stride": _pair(stride), "padding": _pair(padding), "dilation": dilation,
              "groups": int(groups), "in_channels": input.shape[-3], "out_channels": weight.shape[0]}
    return params, _steps(kernel, params["stride"], params["padding"], dilation)


def _conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    kernel, stride, padding, dilation = tuple(weight.shape[-2:]), _pair(stride), _pair(padding), _pair(dilation)
    params = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation, "groups": int(groups),
              "in_channels": input.shape[-3], "out_channels": weight.shape[1] * int(groups)}
    why = "a transposed conv: its output positions read unequal numbers of inputs"
    steps = {axis: Step(math.ceil((d * (k - 1) + 1) / s), Fraction(1, s), Fraction(d * (k - 1) - p, s), False, why)
             for axis, k, s, p, d in zip(AXES, kernel, stride, padding, dilation)}
    return params, steps


def _pool_params(kernel_size, stride, padding, dilation=1, ceil_mode=False):
    kernel = _pair(kernel_size)
    return {"kernel": kernel, "stride": _pair(stride) or kernel, "padding": _pair(padding),
            "dilation": _pair(dilation), "ceil_mode": bool(ceil_mode)}


def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _pool_params(kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    return _pool_params(kernel_size, stride, padding, 1, ceil_mode)


def _lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _pool_params(kernel_size, stride, 0, 1, ceil_mode)


POOLS = {"max_pool2d": ("max", _max_pool2d), "avg_pool2d": ("mean", _avg_pool2d), "lp_pool2d": ("lp", _lp_pool2d)}


def _pad(input, pad, mode="constant", value=None):
    pad = list(pad) + [0] * (4 - len(pad))
    return {"pad": tuple(pad[:4]), "mode": mode}, {"W": Step(1, 1, pad[0]), "H": Step(1, 1, pad[2])}


def _interpolate(input, size=None, scale_factor=None, mode="nearest", *args, **kwargs):
    return {"mode": mode}


def _dims_argument(call, first_position: int):
    """The dims a reduction names (dim=, axis=, or the first positional int or sequence from first_position), or
    None for all of them."""
    dims = call.kwargs.get("dim", call.kwargs.get("axis"))
    if dims is None:
        for argument in call.args[first_position:]:
            if isinstance(argument, (int, tuple, list, torch.Size)) and not isinstance(argument, bool):
                dims = argument
                break
    if dims is None:
        return None
    ndim = len(call.args[0].shape)
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted({d % ndim for d in dims}) if ndim else []


class _Call(NamedTuple):
    func: str
    args: tuple
    kwargs: dict
    inputs: list  # Values of the tensor arguments, in order
    results: list  # output tensors


class _Reading(NamedTuple):
    """What a handler reads from one call: parameters, steps, and the layout (dims, grid) of its outputs."""
    params: dict
    steps: dict | None
    dims: tuple | None  # labels of the outputs' dims; None: from the base input by shape
    pooling: Pooling | None = None
    grid: tuple | None = None  # the outputs' map size when the dims alone cannot say it (HW)


def _grid_of(dims, shape) -> tuple:
    """(height, width) read from the dims labelled H and W: 1 where there is none."""
    sizes = dict(zip(dims, shape))
    return sizes.get("H", 1), sizes.get("W", 1)


def _spatial_reading(call: _Call, params: dict, steps: dict, kind: str | None = None) -> _Reading:
    """A conv or pool on the last two dims: dims kept, and a pooling when it leaves 1x1 of a larger map."""
    x, out = call.inputs[0], call.results[0]
    n_in, n_out = tuple(x.shape[-2:]), tuple(out.shape[-2:])
    pooling = None
    if kind is not None and n_out == (1, 1) and max(n_in) > 1:
        covers = all(step.span - step.offset >= n for step, n in zip(steps.values(), n_in))
        if covers:
            steps = {axis: WHOLE if n > 1 else KEEP for axis, n in zip(AXES, n_in)}
        pooling = Pooling(kind, None, map_of(x) or x, frozenset(AXES), n_in[0] * n_in[1], covers)
    return _Reading(params, steps, x.dims[:-2] + ("H", "W"), pooling)


def _adaptive_reading(call: _Call, kind: str) -> _Reading:
    x, out = call.inputs[0], call.results[0]
    steps = {}
    for axis, n_in, n_out in zip(AXES, x.shape[-2:], out.shape[-2:]):
        if n_out == 1:
            steps[axis] = WHOLE if n_in > 1 else KEEP
        elif n_in % n_out == 0:
            steps[axis] = Step(n_in // n_out, n_in // n_out)
        else:
            steps[axis] = Step(math.ceil(n_in / n_out) + 1, Fraction(n_in, n_out), 0, False,
                               f"an adaptive pool from {n_in} to {n_out}: its windows differ in size")
    pooling = None
    if tuple(out.shape[-2:]) == (1, 1) and max(x.shape[-2:]) > 1:
        pooling = Pooling(kind, None, map_of(x) or x, frozenset(AXES), x.shape[-2] * x.shape[-1], True)
    return _Reading({"output_size": tuple(out.shape[-2:])}, steps, x.dims[:-2] + ("H", "W"), pooling)


def _resample_reading(call: _Call, params: dict, span: int, what: str) -> _Reading:
    """Upsampling (interpolate, pixel shuffle): an output position reads one or two inputs, a pattern that repeats
    every few positions, which one (size, jump, start) cannot say: approximate."""
    x, out = call.inputs[0], call.results[0]
    steps = {}
    for axis, n_in, n_out in zip(AXES, x.shape[-2:], out.shape[-2:]):
        exact = n_out == n_in or (n_in % n_out == 0 and span == 1)
        steps[axis] = Step(span, Fraction(n_in, n_out), 0, False, "" if exact else what)
    return _Reading(params, steps, x.dims[:-2] + ("H", "W"))


def _reduction_reading(call: _Call, op_kind: str) -> _Reading | None:
    x = call.inputs[0]
    if call.func in ("max", "min") and len(call.args) > 1 and isinstance(call.args[1], torch.Tensor):
        return None  # torch.max(a, b): element-wise
    first = 2 if call.func == "norm" else 1
    dims = _dims_argument(call, first)
    dims = list(range(len(x.shape))) if dims is None else dims
    keepdim = bool(call.kwargs.get("keepdim", any(a is True for a in call.args[first:])))
    reduced = {axis for d in dims if x.shape[d] > 1 and x.dims[d] in SPATIAL
               for axis in (AXES if x.dims[d] == "HW" else (x.dims[d],))}
    out_dims = tuple(label for d, label in enumerate(x.dims) if keepdim or d not in dims)
    if not reduced:
        return _Reading({"dims": dims}, None, out_dims)
    positions = math.prod(x.shape[d] for d in dims if x.dims[d] in SPATIAL)
    earlier = x.pooling
    pooling = Pooling(op_kind if earlier is None or earlier.kind == op_kind else f"{earlier.kind}, then {op_kind}",
                      earlier.op if earlier else None, earlier.source if earlier else (map_of(x) or x),
                      frozenset(reduced | (earlier.axes if earlier else set())),
                      positions * (earlier.positions if earlier else 1), True)
    steps = {axis: WHOLE if axis in reduced else KEEP for axis in AXES}
    return _Reading({"dims": dims}, steps, out_dims, pooling, grid=tuple(
        1 if axis in reduced else n for axis, n in zip(AXES, x.grid)))


def _regroup(before, after) -> list:
    """How a reshape moves dimensions: (dims before, dims after) groups whose sizes multiply to the same number,
    in order. Size-1 dimensions left over join the last group."""
    groups, i, j = [], 0, 0
    while i < len(before) and j < len(after):
        group_in, group_out, product_in, product_out = [i], [j], before[i], after[j]
        i, j = i + 1, j + 1
        while product_in != product_out:
            if product_in < product_out:
                group_in.append(i)
                product_in *= before[i]
                i += 1
            else:
                group_out.append(j)
                product_out *= after[j]
                j += 1
        groups.append((group_in, group_out))
    rest = (list(range(i, len(before))), list(range(j, len(after))))
    if groups:
        groups[-1] = (groups[-1][0] + rest[0], groups[-1][1] + rest[1])
    elif rest != ([], []):
        groups.append(rest)
    return groups


def _reshape_dims(x: Value, after: tuple) -> tuple:
    """The labels of a reshape's output dims: a height or width kept alone keeps its label, height and width merged
    become "HW" (view(N, C, -1)), and merged with channels they are gone (a flatten)."""
    labels = [None] * len(after)
    for group_in, group_out in _regroup(x.shape, after):
        inside = [x.dims[d] for d in group_in if x.shape[d] > 1]
        wide = [d for d in group_out if after[d] > 1]
        if len(inside) == 1 and len(wide) == 1:
            labels[wide[0]] = inside[0]
        elif inside == ["H", "W"] and len(wide) == 1:
            labels[wide[0]] = "HW"
        elif inside == ["HW"] and [after[d] for d in wide] == list(x.grid):
            labels[wide[0]], labels[wide[1]] = "H", "W"
    return tuple(labels)


PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)


def _permuted_dims(call: _Call) -> tuple | None:
    """Where a permute, transpose or movedim sends each dim: found by applying it to an empty tensor whose sizes
    are distinct primes."""
    x = call.inputs[0]
    probe = torch.empty(PRIMES[:len(x.shape)], device="meta")
    try:
        moved = getattr(probe, call.func)
        moved = moved(*call.args[1:], **call.kwargs) if callable(moved) else moved  # x.T is a property
    except Exception:  # an unusual spelling: the dims then follow from the shape
        return None
    return tuple(x.dims[PRIMES.index(size)] for size in moved.shape)


def _index_reading(call: _Call) -> _Reading | None:
    """x[...]: slices crop a map (a step with an offset), ints select one row or column, None adds a dim."""
    x, index = call.inputs[0], call.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(item, (torch.Tensor, list)) for item in items):
        spatial = any(label in SPATIAL and size > 1 for label, size in zip(x.dims, x.shape))
        return _Reading({}, {axis: Step(1, 1, 0, False, "advanced indexing of a map") for axis in AXES}
                        if spatial else None, None)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(x.shape) - sum(item is not None for item in items if item is not Ellipsis)
        items = items[:at] + [slice(None)] * fill + items[at + 1:]
    items += [slice(None)] * (len(x.shape) - sum(item is not None for item in items))
    labels, steps, d = [], {}, 0
    for item in items:
        if item is None:
            labels.append(None)
            continue
        size, label = x.shape[d], x.dims[d]
        if isinstance(item, slice):
            start, _, stride = item.indices(size)
            labels.append(label)
            if label in AXES and (start, stride) != (0, 1):
                steps[label] = Step(1, stride, -start)
        elif label in AXES and size > 1:
            steps[label] = Step(1, 1, -(int(item) % size))
        d += 1
    if any(label == "HW" for label in x.dims) and steps:
        return None
    return _Reading({}, {axis: steps.get(axis, KEEP) for axis in AXES} if steps else None, tuple(labels))


def _read(call: _Call) -> _Reading | None:
    """The handler for each kind of function; None: element-wise (the output's dims are its base input's)."""
    func, x = call.func, (call.inputs[0] if call.inputs else None)
    if func == "conv2d":
        return _Reading(*_conv2d(*call.args, **call.kwargs), x.dims[:-2] + ("H", "W"))
    if func == "conv_transpose2d":
        return _Reading(*_conv_transpose2d(*call.args, **call.kwargs), x.dims[:-2] + ("H", "W"))
    if func in POOLS:
        kind, parse = POOLS[func]
        params = parse(*call.args, **call.kwargs)
        return _spatial_reading(call, params, _steps(params["kernel"], params["stride"], params["padding"],
                                                     params["dilation"]), kind)
    if func in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return _adaptive_reading(call, "mean" if "avg" in func else "max")
    if func == "pad":
        return _Reading(*_pad(*call.args, **call.kwargs), x.dims)
    if func in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
        params = _interpolate(*call.args, **call.kwargs)
        mode = "bilinear" if func == "upsample_bilinear" else params["mode"]
        span = {"nearest": 1, "nearest-exact": 1, "bilinear": 2, "linear": 2, "bicubic": 4}.get(mode, 2)
        return _resample_reading(call, params, span, f"{mode} resampling: each output reads a repeating pattern")
    if func == "pixel_shuffle":
        return _resample_reading(call, {}, 1, "a pixel shuffle: each output reads a repeating pattern")
    if func == "pixel_unshuffle":
        factor = int(call.args[1] if len(call.args) > 1 else call.kwargs["downscale_factor"])
        return _Reading({"factor": factor}, {axis: Step(factor, factor) for axis in AXES}, x.dims)
    if func in REDUCTIONS and x is not None:
        return _reduction_reading(call, REDUCTIONS[func])
    if func in ("softmax", "log_softmax", "softmin") and x is not None:
        dim = call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else None)
        label = x.dims[dim % len(x.shape)] if isinstance(dim, int) and x.shape else None
        if label in SPATIAL and x.shape[dim] > 1:
            axes = AXES if label == "HW" else (label,)
            return _Reading({}, {axis: WHOLE if axis in axes else KEEP for axis in AXES}, x.dims)
        return None
    if func in ("linear", "matmul", "mm", "bmm") and x is not None:
        label = x.dims[-1] if x.shape else None
        steps = {axis: WHOLE if label in (axis, "HW") and x.shape[-1] > 1 else KEEP for axis in AXES} \
            if label in SPATIAL else None
        return _Reading({"in_features": x.shape[-1] if x.shape else 1,
                         "out_features": call.results[0].shape[-1] if call.results[0].dim() else 1},
                        steps, x.dims[:-1] + (None,))
    if func in RESHAPES and x is not None:
        return _Reading({}, None, _reshape_dims(x, tuple(call.results[0].shape)))
    if func in PERMUTES and x is not None:
        dims = _permuted_dims(call)
        return _Reading({}, None, dims) if dims is not None else None
    if func == "getitem" and x is not None:
        return _index_reading(call)
    if func in SPATIAL_MIXERS and x is not None and x.is_map:
        return _Reading({}, {axis: Step(1, 1, 0, False, f"{func} moves values across the map") for axis in AXES},
                        None)
    return None


# ---- the recorder -----------------------------------------------------------------------------------------------

def _tensors(obj) -> list:
    """The tensors in nested tuples, lists and dicts, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


class _Stop(Exception):
    """Raised to end a forward pass once the op that was asked for has run."""


class Recorder(TorchFunctionMode):
    """Records every torch call of a forward pass into a Trace (see the module docstring).

    stop_after: end the forward pass (raising _Stop) right after the op of that index has run; the probe of
    helpers.receptive_field needs the map and nothing after it.
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, stop_after: int | None = None):
        super().__init__()
        self.model, self.stop_after = model, stop_after
        self.values: dict[int, Value] = {}  # id of a tensor object -> its latest Value (in-place ops make new ones)
        self.count = itertools.count()
        self.ops: list[Op] = []
        self.stack: list[tuple[str, nn.Module, int]] = []
        self.calls = itertools.count()
        self.names = Counter()
        self.input = self._new(image, None, (None,) * (image.dim() - 2) + ("H", "W"), constant=False)

    def _new(self, tensor, producer, dims, constant, pooling=None, grid=None) -> Value:
        shape = tuple(tensor.shape)
        value = Value(next(self.count), shape, producer, dims, grid or _grid_of(dims, shape), constant, pooling,
                      tensor)
        self.values[id(tensor)] = value
        return value

    def _value(self, tensor) -> Value:
        known = self.values.get(id(tensor))
        if known is not None and known.tensor is tensor:
            return known
        return self._new(tensor, None, (None,) * tensor.dim(), constant=True)

    def hooks(self) -> ExitStack:
        """Module forward hooks that keep the stack of modules running, to name the ops."""
        stack = ExitStack()
        for name, module in self.model.named_modules():
            def enter(module, args, name=name):
                self.stack.append((name, module, next(self.calls)))

            def leave(module, args, output):
                self.stack.pop()
            stack.callback(module.register_forward_pre_hook(enter).remove)
            stack.callback(module.register_forward_hook(leave, always_call=True).remove)
        return stack

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = canonical(func)
        results = [args[0]] if name == "setitem" else _tensors(result)
        if results:
            self._record(name, args, kwargs, results)
            if self.stop_after is not None and len(self.ops) - 1 >= self.stop_after:
                raise _Stop
        return result

    def _name(self, func: str) -> tuple[str, nn.Module | None, int]:
        module_name, module, call = self.stack[-1] if self.stack else ("", None, -1)
        leaf = module is not None and module_name and not any(True for _ in module.children())
        base = module_name if leaf else ".".join(filter(None, (module_name, func)))
        self.names[(base, func)] += 1
        count = self.names[(base, func)]
        return (base if count == 1 else f"{base}#{count}"), (module if module_name else None), call

    def _record(self, func: str, args, kwargs, results) -> None:
        inputs = [self._value(t) for t in _tensors((args, kwargs))]
        call = _Call(func, args, kwargs, inputs, results)
        reading = _read(call) if inputs else None
        variable = [v for v in inputs if not v.constant]
        shape = tuple(results[0].shape)
        base = next((i for i, v in enumerate(inputs) if not v.constant and v.shape == shape), None)
        if base is None:
            base = next((i for i, v in enumerate(inputs) if not v.constant), 0)
        if reading is not None and reading.steps is not None:
            base = 0
        name, module, call_index = self._name(func)
        op = Op(len(self.ops), name, func, module, call_index, inputs, [], {}, None, base)
        if reading is not None:
            op.params, op.steps = reading.params, reading.steps
        source = inputs[base] if inputs else None
        for tensor in results:
            dims = reading.dims if reading is not None and reading.dims is not None else None
            if dims is None or len(dims) != tensor.dim():
                dims = self._dims_by_shape(source, tensor, op)
            pooling = reading.pooling._replace(op=reading.pooling.op or op) if reading and reading.pooling else None
            spreads = any(label in SPATIAL and size > 1 for label, size in zip(dims, tensor.shape)) and \
                not (source is not None and source.is_map)  # a pooled value upsampled or expanded into a map
            if pooling is None and source is not None and len(variable) == 1 and op.steps is None and not spreads:
                pooling = _carried(func, call, source)
            grid = reading.grid if reading is not None and reading.grid else (
                source.grid if source is not None and "HW" in dims else None)
            op.outputs.append(self._new(tensor, op, dims, not variable, pooling, grid))
        self.ops.append(op)

    @staticmethod
    def _dims_by_shape(source: Value | None, tensor, op: Op) -> tuple:
        """An element-wise op keeps its input's dims; one that changes the size of the map is approximate."""
        if source is None:
            return (None,) * tensor.dim()
        if len(source.shape) != tensor.dim():
            return _reshape_dims(source, tuple(tensor.shape)) if source.tensor is not None and \
                math.prod(source.shape) == tensor.numel() else (None,) * tensor.dim()
        changed = {label for label, before, after in zip(source.dims, source.shape, tensor.shape)
                   if label in AXES and before > 1 and before != after}
        if changed and op.steps is None:
            op.steps = {axis: Step(1, Fraction(dict(zip(source.dims, source.shape))[axis],
                                               dict(zip(source.dims, tensor.shape))[axis]), 0, False,
                                   f"{op.func} changes the size of the map") if axis in changed else KEEP
                        for axis in AXES}
            op.base = op.inputs.index(source)
        return source.dims


def _carried(func: str, call: _Call, source: Value) -> Pooling | None:
    """A pooling survives reshapes and element-wise ops on its result; a sum divided by its number of positions
    becomes an average (x.sum((2, 3)) / 16)."""
    pooling = source.pooling
    if pooling is None:
        return None
    scalars = [a for a in call.args[1:] if isinstance(a, (int, float))] + \
              [v.tensor.item() for v in call.inputs[1:] if v.constant and v.tensor.numel() == 1]
    if pooling.kind == "sum" and len(scalars) == 1 and (
            (func == "div" and math.isclose(scalars[0], pooling.positions)) or
            (func == "mul" and math.isclose(scalars[0] * pooling.positions, 1))):
        return pooling._replace(kind="mean")
    return pooling


def trace(model: nn.Module, input_shape=(3, 32, 32), batch: int = 2) -> Trace:
    """The graph of one forward pass of `model` on a (batch, *input_shape) batch of uniform noise, traced on an
    eval-mode deep copy (the model keeps its mode and state) on the device and dtype of its own tensors.

    batch 2, not 1: x.squeeze() then F.log_softmax(x, dim=1), common in the networks students write, needs a batch
    dimension that squeeze leaves alone. Any exception of the forward pass propagates.
    """
    model = copy.deepcopy(model).eval()
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, *input_shape, generator=generator).to(device, dtype) if device.type != "meta" \
        else torch.empty(batch, *input_shape, device=device, dtype=dtype)
    return run_traced(model, image)


def run_traced(model: nn.Module, image: torch.Tensor, stop_after: int | None = None) -> Trace:
    """model(image) under a Recorder, without gradients unless image needs one; stopped after op `stop_after`."""
    recorder = Recorder(model, image, stop_after)
    with recorder.hooks(), torch.set_grad_enabled(image.requires_grad):
        try:
            with recorder:
                output = model(image)
        except _Stop:
            output = recorder.ops[-1].outputs[0].tensor
    outputs = [recorder._value(t) for t in _tensors(output)]
    return Trace(recorder.ops, recorder.input, outputs, tuple(image.shape[1:]))
