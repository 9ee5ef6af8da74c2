"""How each torch function reads its arguments: which op it is (canonical names), its kernel, stride, padding and
dilation, the Steps its outputs take over their input, and the pooling of a map it begins or carries on."""
import math
from fractions import Fraction

import torch

from .graph import AXES, KEEP, RESHAPES, SPATIAL, WHOLE, Pooling, Step, Value, map_of
from .trace_layout import Call, Reading, index_reading, permuted_dims, reshape_dims


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
PERMUTES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", "T", "mT", "adjoint"}
REDUCTIONS = {"mean": "mean", "nanmean": "mean", "sum": "sum", "nansum": "sum", "amax": "max", "max": "max",
              "amin": "min", "min": "min", "logsumexp": "logsumexp", "std": "std", "var": "var", "norm": "norm",
              "prod": "prod", "median": "median", "nanmedian": "median"}
# function families: what the probe of helpers.checker.positive_paths and the rules of helpers.checker.rules treat alike
ACTIVATIONS = {"relu", "relu6", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "prelu", "rrelu", "hardtanh",
               "hardswish", "hardsigmoid", "sigmoid", "tanh", "softplus", "mish", "softsign", "logsigmoid",
               "threshold", "tanhshrink", "hardshrink", "softshrink", "softmax", "log_softmax", "softmin"}
NORMS = {"batch_norm", "instance_norm", "group_norm", "layer_norm", "local_response_norm", "normalize"}
DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
WEIGHTED = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear"}
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


def _dims_argument(call: Call, first_position: int):
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
    ndim = len(call.inputs[0].shape)
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted({d % ndim for d in dims}) if ndim else []


def _spatial_reading(call: Call, params: dict, steps: dict, kind: str | None = None) -> Reading:
    """A conv or pool on the last two dims: dims kept, and a pooling when it leaves 1x1 of a larger map."""
    x, out = call.inputs[0], call.results[0]
    n_in, n_out = tuple(x.shape[-2:]), tuple(out.shape[-2:])
    pooling = None
    if kind is not None and n_out == (1, 1) and max(n_in) > 1:
        covers = all(step.span - step.offset >= n for step, n in zip(steps.values(), n_in))
        if covers:
            steps = {axis: WHOLE if n > 1 else KEEP for axis, n in zip(AXES, n_in)}
        pooling = Pooling(kind, None, map_of(x) or x, n_in[0] * n_in[1], covers)
    return Reading(params, steps, x.dims[:-2] + ("H", "W"), pooling)


def _adaptive_reading(call: Call, kind: str) -> Reading:
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
        pooling = Pooling(kind, None, map_of(x) or x, x.shape[-2] * x.shape[-1], True)
    return Reading({"output_size": tuple(out.shape[-2:])}, steps, x.dims[:-2] + ("H", "W"), pooling)


def _resample_reading(call: Call, params: dict, span: int, what: str) -> Reading:
    """Upsampling (interpolate, pixel shuffle): an output position reads one or two inputs, a pattern that repeats
    every few positions, which one (size, jump, start) cannot say: approximate."""
    x, out = call.inputs[0], call.results[0]
    steps = {}
    for axis, n_in, n_out in zip(AXES, x.shape[-2:], out.shape[-2:]):
        exact = n_out == n_in or (n_in % n_out == 0 and span == 1)
        steps[axis] = Step(span, Fraction(n_in, n_out), 0, False, "" if exact else what)
    return Reading(params, steps, x.dims[:-2] + ("H", "W"))


def _reduction_reading(call: Call, op_kind: str) -> Reading | None:
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
        return Reading({"dims": dims}, None, out_dims)
    positions = math.prod(x.shape[d] for d in dims if x.dims[d] in SPATIAL)
    earlier = x.pooling
    pooling = Pooling(op_kind if earlier is None or earlier.kind == op_kind else f"{earlier.kind}, then {op_kind}",
                      earlier.op if earlier else None, earlier.source if earlier else (map_of(x) or x),
                      positions * (earlier.positions if earlier else 1), True)
    steps = {axis: WHOLE if axis in reduced else KEEP for axis in AXES}
    return Reading({"dims": dims}, steps, out_dims, pooling, grid=tuple(
        1 if axis in reduced else n for axis, n in zip(AXES, x.grid)))


def read(call: Call) -> Reading | None:
    """The handler for each kind of function; None: element-wise (the output's dims are its base input's)."""
    func, x = call.func, (call.inputs[0] if call.inputs else None)
    if func == "conv2d":
        return Reading(*_conv2d(*call.args, **call.kwargs), x.dims[:-2] + ("H", "W"))
    if func == "conv_transpose2d":
        return Reading(*_conv_transpose2d(*call.args, **call.kwargs), x.dims[:-2] + ("H", "W"))
    if func in POOLS:
        kind, parse = POOLS[func]
        params = parse(*call.args, **call.kwargs)
        return _spatial_reading(call, params, _steps(params["kernel"], params["stride"], params["padding"],
                                                     params["dilation"]), kind)
    if func in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return _adaptive_reading(call, "mean" if "avg" in func else "max")
    if func == "pad":
        return Reading(*_pad(*call.args, **call.kwargs), x.dims)
    if func in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
        params = _interpolate(*call.args, **call.kwargs)
        mode = "bilinear" if func == "upsample_bilinear" else params["mode"]
        span = {"nearest": 1, "nearest-exact": 1, "bilinear": 2, "linear": 2, "bicubic": 4}.get(mode, 2)
        return _resample_reading(call, params, span, f"{mode} resampling: each output reads a repeating pattern")
    if func == "pixel_shuffle":
        return _resample_reading(call, {}, 1, "a pixel shuffle: each output reads a repeating pattern")
    if func == "pixel_unshuffle":
        factor = int(call.args[1] if len(call.args) > 1 else call.kwargs["downscale_factor"])
        return Reading({"factor": factor}, {axis: Step(factor, factor) for axis in AXES}, x.dims)
    if func in REDUCTIONS and x is not None:
        return _reduction_reading(call, REDUCTIONS[func])
    if func in ("softmax", "log_softmax", "softmin") and x is not None:
        dim = call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else None)
        label = x.dims[dim % len(x.shape)] if isinstance(dim, int) and x.shape else None
        if label in SPATIAL and x.shape[dim] > 1:
            axes = AXES if label == "HW" else (label,)
            return Reading({}, {axis: WHOLE if axis in axes else KEEP for axis in AXES}, x.dims)
        return None
    if func in ("linear", "matmul", "mm", "bmm") and x is not None:
        label = x.dims[-1] if x.shape else None
        steps = {axis: WHOLE if label in (axis, "HW") and x.shape[-1] > 1 else KEEP for axis in AXES} \
            if label in SPATIAL else None
        return Reading({"in_features": x.shape[-1] if x.shape else 1,
                         "out_features": call.results[0].shape[-1] if call.results[0].dim() else 1},
                        steps, x.dims[:-1] + (None,))
    if func in RESHAPES and x is not None:
        return Reading({}, None, reshape_dims(x, tuple(call.results[0].shape)))
    if func in PERMUTES and x is not None:
        dims = permuted_dims(call)
        return Reading({}, None, dims) if dims is not None else None
    if func == "getitem" and x is not None:
        return index_reading(call)
    if func in SPATIAL_MIXERS and x is not None and x.is_map:
        return Reading({}, {axis: Step(1, 1, 0, False, f"{func} moves values across the map") for axis in AXES},
                        None)
    return None


def carried(func: str, call: Call, source: Value) -> Pooling | None:
    """A pooling survives reshapes and element-wise ops on its result; a sum divided by its number of positions
    becomes an average (x.sum((2, 3)) / 16)."""
    pooling = source.pooling
    if pooling is None:
        return None
    scalars = [a for a in call.args[1:] if isinstance(a, (int, float))] + \
              [v.tensor.item() for v in call.inputs[1:] if v.constant and v.tensor.numel() == 1
               and v.tensor.device.type != "meta"]  # a meta tensor holds no number
    if pooling.kind == "sum" and len(scalars) == 1 and (
            (func == "div" and math.isclose(scalars[0], pooling.positions)) or
            (func == "mul" and math.isclose(scalars[0] * pooling.positions, 1))):
        return pooling._replace(kind="mean")
    return pooling
