"""Receptive field of a CNN, two ways: the windows on the traced graph (helpers.checker.windows), as a table, and the
gradient ground truth.

The field that counts is that of one unit of the map the global pool averages (the GAP window is not added):
after the global pool nothing is spatial, and the table says so instead of growing a field. empirical_rf measures
that same unit's field from gradients, on an input large enough that the gradient stays off the border.
"""
import copy
import itertools
import math

import torch
from torch import nn

from ..errors import first_line
from ..tables import text_table
from .graph import AXES, KEEP, Op, Trace, Value
from .positive_paths import distinct_positive, nominal_windows, positive_paths
from .trace import run_traced, trace
from .trace_ops import POOLS
from .windows import fields, per_axis, whole_since

LAYERS = {"conv2d", "conv_transpose2d", *POOLS, "adaptive_avg_pool2d", "adaptive_max_pool2d"}  # rows even as 1x1


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
    return {"name": op.name, "kind": _kind(op), "kernel": per_axis(*kernel) if None not in kernel else None,
            "stride": per_axis(*stride) if None not in stride else None,
            "padding": per_axis(*padding) if None not in padding else None,
            "dilation": per_axis(*dilation) if None not in dilation else None,
            "k_eff": per_axis(*k_eff) if None not in k_eff else None,
            "n_in": per_axis(*source.grid), "n_out": per_axis(*out.grid),
            "j_in": per_axis(before.h.jump, before.w.jump), "j_out": per_axis(after.h.jump, after.w.jump),
            "r_in": per_axis(before.h.size, before.w.size), "r_out": per_axis(after.h.size, after.w.size),
            "start": per_axis(after.h.start, after.w.start), "whole": after.whole, "branches": branches,
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
    if not stage.covers:  # an AvgPool2d(4) on a 5x5 map, a 1x1 stride-2 conv on a 2x2 one: part of the map is read
        kind = {"mean": "avg-pool of part of the map", "max": "max-pool of part of the map",
                "conv": "conv on part of the map"}.get(stage.how, kind)
    source = known[id(stage.map)]
    row.update(kind=kind, global_pool=stage.how == "mean" and stage.covers, output_stage=True, branches=None,
               source=source.origin, whole=source.whole, head=describe_head(graph), covers=stage.covers)
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
    field)), whole (the field is that of a whole map), global_pool, output_stage, approximate and why; the
    output-stage row adds covers (it reads every position of the map).
    A number is an int for a square layer and (height, width) otherwise. The output-stage row's r_in is the
    network's receptive field (final_rf); when it covers the map, its r_out is the whole map's, which format_rf_table
    says in words; it also names the op that made that field (source) and the output stage's layers (head).
    """
    return rf_rows(trace(model, input_shape))


def final_rf(rows: list[dict]) -> int:
    """The network's receptive field in pixels (the larger side): one unit of the map the output stage reads,
    or of the last spatial row's output when there is no output stage; 1 when there is no spatial layer."""
    stage = next((row for row in rows if row["output_stage"]), None)
    value = stage["r_in"] if stage is not None else rows[-1]["r_out"] if rows else 1
    return max(value) if isinstance(value, tuple) else value


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def _field_cell(row: dict) -> str:
    if row["output_stage"] and row["covers"]:
        return f"{_cell(row['r_in'])} -> whole map"
    if row["branches"]:
        return f"{' | '.join(_cell(size) for _, size in row['branches'])} -> {_cell(row['r_out'])}"
    return f"{_cell(row['r_in'])} -> {'whole input' if row['whole'] else _cell(row['r_out'])}"


def format_rf_table(rows: list[dict]) -> str:
    """A fixed-width text table, then the final receptive field in a sentence that says which unit it is the
    field of, and what the output stage holds. The output stage's row reads "whole map" where a field would be: it
    reads the whole map, whose unit's field is the network's (the GAP window is not added); one that reads only part
    of the map (an AvgPool2d(4) on a 5x5 map) gives the field of what it reads."""
    header = ["layer", "kind", "k", "s", "p", "d", "n in->out", "j in->out", "r in->out", ""]
    lines = [[row["name"], row["kind"], *(_cell(row[key]) for key in ("kernel", "stride", "padding", "dilation")),
              *(f"{_cell(row[key + '_in'])} -> {_cell(row[key + '_out'])}" for key in "nj"), _field_cell(row),
              "*" if row["approximate"] else ""] for row in rows]
    text = text_table([header, *lines], [i >= 2 for i in range(len(header))])
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
    article = "an" if last["kind"][0] in "aeiou" else "a"
    seen = ""
    if last["kind"] == "avg-pool of part of the map":  # its windows add to the field the logits read (rules.py)
        out = max(last["r_out"]) if isinstance(last["r_out"], tuple) else last["r_out"]
        seen = f"; each logit sees {last['name']}'s output, {out} px"
    return f"final receptive field: {rf} px ({unit}, which {last['name']} reads as {article} {last['kind']}; no " \
           f"GAP{seen})"


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
    AvgPool2d(4) averages at 32x32 stays the probed one at any size), its channels summed with unequal positive
    weights (a channel norm last would otherwise pass nothing), under positive_paths on a float64 CPU copy,
    adaptive pools fixed to the windows they pool at input_shape. The input is a multiple of input_shape's size,
    large enough for the analytic field plus two jumps, and grown until the gradient stays off the border; the
    forward pass stops at the probed map, so a head that needs the nominal size (a hard-coded view) does not
    matter. Raises ValueError with one line when the network cannot run larger, runs other ops at another size,
    or has a field as large as the whole input.
    """
    if any(tensor.is_meta for tensor in itertools.chain(model.parameters(), model.buffers())):
        raise ValueError("its weights are on the meta device, which holds no values: there is no gradient to measure "
                         "(the analytic field stands)")
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
    if scale * max(height, width) > MAX_SIDE:
        raise ValueError(f"its analytic field, {field.size} px, needs a probe image larger than the {MAX_SIDE} px "
                         f"this measurement goes to")
    net = copy.deepcopy(model).to("cpu", torch.float64).eval().requires_grad_(False)
    while scale * max(height, width) <= MAX_SIDE:
        size = (*input_shape[:-2], scale * height, scale * width)
        image = torch.ones(1, *size, dtype=torch.float64, requires_grad=True)
        try:
            with positive_paths(nominal_windows(nominal)):
                probe = run_traced(net, image, stop_after=producer.index)
        except Exception as error:
            raise ValueError(f"{type(model).__name__} cannot run on a {'x'.join(map(str, size))} input, needed to "
                             f"measure its field ({field.size} px): {type(error).__name__}: "
                             f"{first_line(error)}") from error
        if [op.func for op in probe.ops[:producer.index + 1]] != ops:
            raise ValueError(f"{type(model).__name__} runs other ops on a {'x'.join(map(str, size))} input than "
                             f"on {'x'.join(map(str, input_shape))}: the probed map cannot be found there")
        tensor = probe.ops[producer.index].outputs[producer.outputs.index(probed)].tensor
        unit = _centre_unit(probed, tensor).flatten()  # its channels weighted unequally, as the weights are
        gradient, = torch.autograd.grad((unit * distinct_positive(unit.shape)).sum(), image)
        reached = gradient[0].ne(0).flatten(0, -3).any(0)
        if not reached.any():
            raise ValueError("no gradient reaches the input from the probed unit")
        border = torch.cat([reached[0], reached[-1], reached[:, 0], reached[:, -1]])
        if not border.any():
            return max(_extent(reached.any(1)), _extent(reached.any(0)))
        scale += 1
    raise ValueError(f"the gradient still reaches the border of a {MAX_SIDE}-pixel input")
