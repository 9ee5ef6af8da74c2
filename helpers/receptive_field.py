"""Receptive field of a CNN, two ways: window arithmetic on the traced graph, and the gradient ground truth.

Every tensor of the forward pass (helpers.trace) carries its window along each axis: one element i sees the input
pixels start + i * jump up to start + i * jump + size - 1. A conv or pool of kernel k, stride s, padding p and
dilation d updates it (size += d(k - 1) jump, start -= p jump, jump *= s); element-wise ops pass it on; a merge
(add, cat, mul) takes the union of its inputs' windows, which is exact for branches: each branch's window is its
own, not the sum of both. The formulas are approximate only where the window of an element is not of that form,
and the table then names the op (upsampling, transposed conv, an adaptive pool of uneven windows, a map whose size
an unknown op changes).

The field that counts is that of one unit of the map the global pool averages (the GAP window is not added):
after the global pool nothing is spatial, and the table says so instead of growing a field. empirical_rf measures
that same unit's field from gradients, on an input large enough that the gradient stays off the border.
"""
import copy
import math
from contextlib import contextmanager
from fractions import Fraction
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .trace import AXES, KEEP, POOLS, Op, Trace, Value, canonical, run_traced, trace


class Window(NamedTuple):
    """Along one axis, the input pixels one element of a map sees: element i sees start + i * jump up to
    start + i * jump + size - 1; when `fixed`, every element sees the same pixels (a global pool went into it)."""
    start: Fraction
    size: Fraction
    jump: Fraction
    fixed: bool = False


class Field(NamedTuple):
    """A tensor's windows along the height and the width, why they are approximate if they are, and the op that
    last shaped them."""
    h: Window
    w: Window
    approximate: tuple  # "op: why" for each op the formulas could not follow
    origin: str

    @property
    def size(self) -> int:
        """The larger side of one element's field, in pixels."""
        return _number(max(self.h.size, self.w.size))

    @property
    def whole(self) -> bool:
        return self.h.fixed or self.w.fixed


def _number(value):
    """An int where a Fraction is whole (jumps become fractions only after upsampling)."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else value


def _axes(h, w):
    """One number for a square layer, (height, width) otherwise."""
    h, w = _number(h), _number(w)
    return h if h == w else (h, w)


def _stepped(window: Window, step, n_in: int) -> Window:
    if step.whole:
        if window.fixed:
            return window._replace(jump=window.jump * n_in)
        return Window(window.start, window.size + (n_in - 1) * window.jump, window.jump * n_in, True)
    if window.fixed:
        return window._replace(jump=window.jump * step.stride)
    return Window(window.start - step.offset * window.jump, window.size + (step.span - 1) * window.jump,
                  window.jump * step.stride)


def _union(parts, n_out: int, op: Op) -> tuple[Window, str]:
    """The window along one axis of an element-wise op on several inputs: [(window, elements)] -> (window, why it
    is approximate, or ""). An input of one element broadcast over a map, or fixed, sees the same pixels from every
    element; the result is then fixed too, exact when those pixels hold every element's own window."""
    fixed = [w for w, n in parts if w.fixed or (n == 1 < n_out)]
    moving = [(w, n) for w, n in parts if not (w.fixed or (n == 1 < n_out))]
    why = f"{op.name} merges maps whose elements lie at different distances" \
        if len({w.jump for w, _ in moving}) > 1 else ""
    if not fixed:
        start = min(w.start for w, _ in moving)
        return Window(start, max(w.start + w.size for w, _ in moving) - start, moving[0][0].jump), why
    start, end = min(w.start for w in fixed), max(w.start + w.size for w in fixed)
    covered = [(w.start, w.start + (n - 1) * w.jump + w.size) for w, n in moving]
    if any(low < start or high > end for low, high in covered):
        why = why or f"{op.name} merges a global value with a map reaching beyond it"
        start, end = min([start, *(low for low, _ in covered)]), max([end, *(high for _, high in covered)])
    jump = moving[0][0].jump if moving else fixed[0].jump
    return Window(start, end - start, jump, True), why


def fields(graph: Trace) -> dict:
    """{id of a Value: its Field} for every tensor that depends on the input (constants have none)."""
    known = {id(graph.input): Field(Window(0, 1, 1), Window(0, 1, 1), (), "input")}
    for op in graph.ops:
        field = _field(op, known)
        if field is not None:
            for value in op.outputs:
                known[id(value)] = field
    return known


def _field(op: Op, known: dict) -> Field | None:
    inputs = [(value, known[id(value)]) for value in op.inputs if id(value) in known]
    if not inputs:
        return None
    out = op.outputs[0]
    if op.steps is not None:
        source = known.get(id(op.map_input))
        if source is None:
            return None
        windows = [_stepped(w, op.steps[axis], n) for axis, w, n in zip(AXES, source[:2], op.map_input.grid)]
        why = tuple(f"{op.name}: {step.approximate}" for step in op.steps.values() if step.approximate)
        return Field(*windows, tuple(dict.fromkeys(source.approximate + why)), op.name)
    distinct = list({field[:2]: field for _, field in inputs}.values())
    if len(distinct) == 1:
        return Field(*distinct[0][:2], tuple(dict.fromkeys(r for _, f in inputs for r in f.approximate)),
                     distinct[0].origin)
    windows, why = [], []
    for i, (axis, n_out) in enumerate(zip(AXES, out.grid)):
        window, reason = _union([(field[i], value.grid[i]) for value, field in inputs], n_out, op)
        windows.append(window)
        why += [reason] if reason else []
    approximate = tuple(dict.fromkeys([r for _, f in inputs for r in f.approximate] + why))
    return Field(*windows, approximate, op.name)


LAYERS = {"conv2d", "conv_transpose2d", *POOLS, "adaptive_avg_pool2d", "adaptive_max_pool2d"}  # rows even as 1x1


def whole_since(graph: Trace, known: dict) -> str:
    """The op where a global pool's result first goes back into a map (squeeze-and-excitation): from there on, every
    unit's field is the whole input."""
    return next((op.name for op in graph.ops if op.steps is None and op.outputs[0].is_map
                 and id(op.outputs[0]) in known and known[id(op.outputs[0])].whole), "an op")


def _is_row(op: Op, known: dict) -> bool:
    """A spatial op on a map, or a merge of maps whose fields differ (branches joining)."""
    source = op.map_input
    if op.steps is not None:
        return source is not None and source.is_map and (
            op.func in LAYERS or any(step != KEEP for step in op.steps.values()))
    fields_in = {known[id(v)][:2] for v in op.inputs if id(v) in known}
    return len(fields_in) > 1 and op.outputs[0].is_map


def _kind(op: Op) -> str:
    p = op.params
    if op.func == "conv2d":
        kernel = p["kernel"]
        if p["groups"] == p["in_channels"] > 1:
            return "depthwise conv" if kernel != (1, 1) else "depthwise 1x1 conv"
        if kernel == (1, 1):
            return "pointwise conv" if p["groups"] == 1 else "grouped 1x1 conv"
        if max(p["dilation"]) > 1:
            return "dilated conv"
        return "grouped conv" if p["groups"] > 1 else "conv"
    names = {"conv_transpose2d": "transposed conv", "max_pool2d": "max-pool", "avg_pool2d": "avg-pool",
             "lp_pool2d": "lp-pool", "adaptive_avg_pool2d": "adaptive avg-pool",
             "adaptive_max_pool2d": "adaptive max-pool", "pad": "pad", "pixel_shuffle": "pixel shuffle",
             "pixel_unshuffle": "pixel unshuffle", "getitem": "crop"}
    if op.func in names:
        return names[op.func]
    if op.func in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
        return f"upsample ({p.get('mode', 'bilinear' if 'bilinear' in op.func else 'nearest')})"
    return op.func if op.steps is not None else f"merge ({op.func})"


def _geometry(op: Op) -> tuple:
    """(kernel, stride, padding, dilation) per axis, from the op's arguments or, lacking them, its steps."""
    p, steps = op.params, [op.steps[axis] for axis in AXES] if op.steps else None
    if "kernel" in p:
        return p["kernel"], p["stride"], p["padding"], p["dilation"]
    if op.func == "pad":
        return (1, 1), (1, 1), (p["pad"][2], p["pad"][0]), (1, 1)
    if steps is None:
        return (None,) * 2, (None,) * 2, (None,) * 2, (None,) * 2
    sizes = op.map_input.grid  # a whole-axis step (a reduction) reads the whole axis at once
    kernel = tuple(n if s.whole else s.span for s, n in zip(steps, sizes))
    stride = tuple(n if s.whole else s.stride for s, n in zip(steps, sizes))
    return kernel, stride, tuple(0 if s.whole else s.offset for s in steps), (1, 1)


def _row(op: Op, known: dict, source: Value | None = None, out: Value | None = None) -> dict:
    source = source or op.map_input
    out = out or op.outputs[0]
    before, after = known[id(source)], known[id(out)]
    kernel, stride, padding, dilation = _geometry(op)
    k_eff = tuple(None if k is None else d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    branches = None
    if op.steps is None:
        branches = tuple(dict.fromkeys((known[id(v)].origin, known[id(v)].size) for v in op.inputs
                                       if id(v) in known))
    return {"name": op.name, "kind": _kind(op), "kernel": _axes(*kernel) if None not in kernel else None,
            "stride": _axes(*stride) if None not in stride else None,
            "padding": _axes(*padding) if None not in padding else None,
            "dilation": _axes(*dilation) if None not in dilation else None,
            "k_eff": _axes(*k_eff) if None not in k_eff else None,
            "n_in": _axes(*source.grid), "n_out": _axes(*out.grid),
            "j_in": _axes(before.h.jump, before.w.jump), "j_out": _axes(after.h.jump, after.w.jump),
            "r_in": _axes(before.h.size, before.w.size), "r_out": _axes(after.h.size, after.w.size),
            "start": _axes(after.h.start, after.w.start), "whole": after.whole, "branches": branches,
            "global_pool": False, "output_stage": False, "approximate": bool(after.approximate),
            "why": after.approximate}


STAGE_KINDS = {"mean": "global avg-pool", "max": "global max-pool", "sum": "global sum-pool", "flatten": "flatten",
               "conv": "conv as large as the map"}


def _stage_row(graph: Trace, known: dict) -> dict:
    """The output stage's first op, read on the map it reduces: its r_in is the network's field. `source` names
    the op that made that field, `whole` says whether it is the whole input's, `head` lists what follows."""
    stage = graph.stage
    row = _row(stage.first, known, stage.map, stage.op.outputs[0])
    if stage.first.func not in POOLS and stage.first.func != "conv2d":
        row.update(kernel=row["n_in"], stride=row["n_in"], padding=0, dilation=1, k_eff=row["n_in"])
    kind = STAGE_KINDS.get(stage.how, stage.how)
    if stage.how == "mean" and not stage.covers:
        kind = "avg-pool of part of the map"
    source = known[id(stage.map)]
    row.update(kind=kind, global_pool=stage.how == "mean" and stage.covers, output_stage=True, branches=None,
               source=source.origin, whole=source.whole, head=describe_head(graph))
    return row


def rf_rows(graph: Trace) -> list[dict]:
    """The receptive-field table of a traced forward pass (see rf_table)."""
    known = fields(graph)
    probed = graph.probed_map
    needed = graph.ancestors([probed])
    rows = [_row(op, known) for op in graph.ops if op.index in needed and _is_row(op, known)]
    if graph.stage is not None and id(graph.stage.map) in known:
        rows.append(_stage_row(graph, known))
    return rows


def rf_table(model: nn.Module, input_shape=(3, 32, 32)) -> list[dict]:
    """One row per spatial op on the way to the map the global pool averages, in the order they run: convs of any
    kind, max/avg/adaptive pools, pads, upsampling, crops, module or functional alike, and merges where branches
    with different fields join; then one row for the op that starts the output stage (the global pool, a flatten,
    a conv as large as the map). Nothing after it: the output stage has no spatial field to grow.

    Each row: name (the module, or module.function), kind, kernel, stride, padding, dilation, k_eff = d(k - 1) + 1,
    n_in/n_out (map size), j_in/j_out (jump: input pixels between neighbouring outputs), r_in/r_out (the field of
    one element, in pixels), start (where output element 0's field begins), branches (a merge's inputs as (origin,
    field)), whole (the field is that of a whole map), global_pool, output_stage, approximate and why.
    A number is an int for a square layer and (height, width) otherwise. The output-stage row's r_in is the
    network's receptive field (final_rf); its r_out covers the whole map, which format_rf_table says in words.
    """
    return rf_rows(trace(model, input_shape))


def final_rf(rows: list[dict]) -> int:
    """The network's receptive field in pixels (the larger side): one unit of the map the output stage reads,
    or of the last spatial row's output when there is no output stage; 1 when there is no spatial layer."""
    stage = next((row for row in rows if row["output_stage"]), None)
    value = stage["r_in"] if stage is not None else rows[-1]["r_out"] if rows else 1
    return max(value) if isinstance(value, tuple) else value


def text_table(lines: list[list[str]], right_from: int) -> list[str]:
    """Fixed-width columns, left-aligned before column right_from and right-aligned from it on."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return ["  ".join(cell.rjust(width) if i >= right_from else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def _field_cell(row: dict) -> str:
    if row["output_stage"]:
        return f"{_cell(row['r_in'])} -> whole map"
    if row["branches"]:
        return f"{' | '.join(_cell(size) for _, size in row['branches'])} -> {_cell(row['r_out'])}"
    return f"{_cell(row['r_in'])} -> {'whole input' if row['whole'] else _cell(row['r_out'])}"


def format_rf_table(rows: list[dict]) -> str:
    """A fixed-width text table, then the final receptive field in a sentence that says which unit it is the
    field of, and what the output stage holds. The output stage's row reads "whole map" where a field would be: it
    reads the whole map, whose unit's field is the network's (the GAP window is not added)."""
    header = ["layer", "kind", "k", "s", "p", "d", "n in->out", "j in->out", "r in->out", ""]
    lines = [[row["name"], row["kind"], *(_cell(row[key]) for key in ("kernel", "stride", "padding", "dilation")),
              *(f"{_cell(row[key + '_in'])} -> {_cell(row[key + '_out'])}" for key in "nj"), _field_cell(row),
              "*" if row["approximate"] else ""] for row in rows]
    text = text_table([header, *lines], right_from=2)
    text.append(final_rf_sentence(rows))
    if rows and rows[-1]["output_stage"]:
        head = ", ".join(rows[-1]["head"]) or "nothing"
        text.append(f"output stage: {rows[-1]['name']}, then {head} (no spatial field there to grow)")
    reasons = tuple(dict.fromkeys(reason for row in rows for reason in row["why"]))
    if reasons:
        text.append(f"* approximate: {'; '.join(reasons)}. empirical_rf measures the field exactly")
    return "\n".join(text)


def _map_text(n) -> str:
    return "x".join(map(str, n)) if isinstance(n, tuple) else f"{n}x{n}"


def final_rf_sentence(rows: list[dict]) -> str:
    """The final receptive field and the unit it belongs to, in one line."""
    if not rows:
        return "final receptive field: 1 px (no spatial layer)"
    rf, last = final_rf(rows), rows[-1]
    if not last["output_stage"]:
        return f"final receptive field: {rf} px (one unit of {last['name']}'s output; no output stage)"
    unit = f"one unit of the {_map_text(last['n_in'])} map from {last['source']}"
    if last["whole"]:
        return f"final receptive field: the whole input ({rf} px here: {unit}, where a global pool's result " \
               f"goes back into the map)"
    if last["global_pool"]:
        return f"final receptive field: {rf} px ({unit}, which {last['name']} averages; the GAP window is not added)"
    return f"final receptive field: {rf} px ({unit}, which {last['name']} reads as a {last['kind']}; no GAP)"


def describe_head(graph: Trace) -> list[str]:
    """The ops after the output stage begins, by the module they come from (Linear, Dropout) or by function
    (view, log_softmax): one name per module call."""
    names, last_call = [], None
    for op in graph.stage.head:
        if op.module is not None and op.call == last_call:
            continue
        last_call = op.call if op.module is not None else None
        names.append(op.kind)
    return names


# ---- the gradient measurement ----------------------------------------------------------------------------------

ACTIVATIONS = {"relu", "relu6", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "prelu", "rrelu", "hardtanh",
               "hardswish", "hardsigmoid", "sigmoid", "tanh", "softplus", "mish", "softsign", "logsigmoid",
               "threshold", "tanhshrink", "hardshrink", "softshrink", "softmax", "log_softmax", "softmin"}
NORMS = {"batch_norm", "instance_norm", "group_norm", "layer_norm", "local_response_norm", "normalize"}
DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
WEIGHTED = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear"}


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
            weight = torch.full_like(weight, 1.0 / weight[0].numel())
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
    the receptive field: every conv and linear weight is 1/fan-in and every bias 0, activations, normalisations
    (their statistics are not part of the field), softmax and dropout are the identity, and max-pools average
    their windows. Module or functional, all are seen (a TorchFunctionMode).

    adaptive: for the adaptive pools in the order they run, the (kernel, stride) of an average pool to use
    instead, or None to keep it: an AdaptiveAvgPool2d(2) reads 2x2 of a 4x4 map, but half of a larger one."""
    with _PositivePaths(adaptive):
        yield


def _nominal_windows(graph: Trace) -> list:
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


MAX_SIDE = 1024  # the largest probe image: beyond it the float64 activations of a real network get too large


def _centre_unit(value: Value, tensor: torch.Tensor) -> torch.Tensor:
    """The probed unit: sample 0, every channel, the middle position of the map's height and width."""
    index = [slice(None)] * tensor.dim()
    index[0] = 0
    for d, label in enumerate(value.dims):
        if label in AXES:
            index[d] = tensor.shape[d] // 2
    return tensor[tuple(index)]


def _extent(mask: torch.Tensor) -> int:
    hits = mask.nonzero()
    return int(hits[-1] - hits[0] + 1)


def empirical_rf(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """The receptive field measured by gradients: how far one unit's input gradient reaches, in pixels (the larger
    of height and width).

    The unit is the centre of the map the global pool averages (Trace.probed_map at input_shape: the map an
    AvgPool2d(4) averages at 32x32 stays the probed one at any size), all channels summed, under positive_paths on
    a float64 CPU copy, adaptive pools fixed to the windows they pool at input_shape. The input is a multiple of input_shape's size, large enough for the analytic field plus
    two jumps, and grown until the gradient stays off the border; the forward pass stops at the probed map, so a
    head that needs the nominal size (a hard-coded view) does not matter. Raises ValueError with one line when
    the network cannot run larger, runs other ops at another size, or has a field as large as the whole input.
    """
    nominal = trace(model, input_shape)
    probed = nominal.probed_map
    if probed is nominal.input:
        return 1
    known = fields(nominal)
    field = known.get(id(probed))
    if field is None:
        raise ValueError("no input pixel reaches the map the global pool averages")
    if field.whole:
        raise ValueError(f"the field is the whole input ({whole_since(nominal, known)} merges a global pool back "
                         f"into the map): no input is large enough to measure it")
    producer = probed.producer
    ops = [op.func for op in nominal.ops[:producer.index + 1]]
    height, width = input_shape[-2:]
    jump = max(field.h.jump, field.w.jump)
    scale = max(1, math.ceil((field.size + 2 * jump + 2) / min(height, width)))
    net = copy.deepcopy(model).to("cpu", torch.float64).eval().requires_grad_(False)
    while scale * max(height, width) <= MAX_SIDE:
        size = (*input_shape[:-2], scale * height, scale * width)
        image = torch.ones(1, *size, dtype=torch.float64, requires_grad=True)
        try:
            with positive_paths(_nominal_windows(nominal)):
                probe = run_traced(net, image, stop_after=producer.index)
        except Exception as error:
            raise ValueError(f"{type(model).__name__} cannot run on a {'x'.join(map(str, size))} input, needed to "
                             f"measure its field ({field.size} px): {type(error).__name__}: "
                             f"{str(error).partition(chr(10))[0]}") from error
        if [op.func for op in probe.ops[:producer.index + 1]] != ops:
            raise ValueError(f"{type(model).__name__} runs other ops on a {'x'.join(map(str, size))} input than "
                             f"on {'x'.join(map(str, input_shape))}: the probed map cannot be found there")
        tensor = probe.ops[producer.index].outputs[producer.outputs.index(probed)].tensor
        gradient, = torch.autograd.grad(_centre_unit(probed, tensor).sum(), image)
        reached = gradient[0].ne(0).flatten(0, -3).any(0)
        if not reached.any():
            raise ValueError("no gradient reaches the input from the probed unit")
        border = torch.cat([reached[0], reached[-1], reached[:, 0], reached[:, -1]])
        if not border.any():
            return max(_extent(reached.any(1)), _extent(reached.any(0)))
        scale += 1
    raise ValueError(f"the gradient still reaches the border of a {MAX_SIDE}-pixel input")
