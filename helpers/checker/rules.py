"""The S7 assignment's structural rules, each read on the graph of what the model computes as a careful grader reads
them: module or functional, branches included (helpers.checker.trace records one forward pass,
helpers.checker.windows puts the receptive field on it). Each rule returns what it measured and whether that
passes; helpers.checker.spec makes the checks.

The reading, rule by rule:
- architecture: C1 C2 C3 C4 O, convs before, between and after exactly 3 max-pools (a max-pool that keeps the map's
  size is no transition; one that leaves 1x1 of the map is a global pool). C4 needs a conv that runs on the map
  before the global pool; the output stage starts at the global pool, so convs after it (1x1 on the 1x1 map, fully
  connected layers) are the head, not C4. A block without a conv is named.
- receptive field: one unit of the map the global pool averages, > 44 px (the GAP window is not added). An average
  of part of the map instead (AvgPool2d(3) on a 4x4 map) adds its window: the field is its output's, which the
  logits see, and one unit's is said beside it.
- depthwise-separable: a depthwise conv (groups == in_channels > 1, kernel larger than 1x1; a depth multiplier
  counts) followed, possibly through normalisation, activation or dropout (hand-written ones too: x * sigmoid(x), a
  channel LayerNorm of means, any op of each position alone whose inputs all come from the depthwise conv), by a 1x1
  conv with groups == 1 that takes its channels. A grouped 1x1 mixes no channels across its groups; a 1x1
  depthwise filters nothing spatially. When none qualifies, each depthwise conv is said with what follows it
  instead (a 3x3 conv, a max-pool, the global pool, whose 1x1 conv after it is the classifier).
- dilated: a kernel larger than 1 with dilation >= 2 (dilation changes nothing for a 1x1 kernel).
- global average pooling: the whole map averaged to 1x1, in any form (AdaptiveAvgPool2d(1), an AvgPool2d as large as
  the map, F.adaptive_avg_pool2d, F.avg_pool2d(x, x.shape[-1]), x.mean((2, 3)), x.view(n, c, -1).mean(-1), a sum
  divided by the number of positions). A sum alone is not an average, nor a max. After it only layers that act on
  the 1x1 map: fully connected (Linear, a conv on the 1x1 map), activations, normalisation, dropout, reshapes,
  (log-)softmax, arithmetic with constants.
"""
from collections import Counter
from functools import cached_property

from torch import nn

from .graph import RESHAPES, SPATIAL, Op, Trace, Value
from .receptive_field import describe_head, empirical_rf
from .trace_ops import ACTIVATIONS, DROPOUTS, NORMS, PERMUTES, POOLS, WEIGHTED
from .windows import fields, whole_since

MIN_RF = 44


FULLY_CONNECTED = {"linear", "matmul", "mm", "addmm", "bmm", "conv2d"}
ARITHMETIC = {"add", "sub", "rsub", "mul", "div", "rdiv", "neg", "pow", "clamp", "clip", "abs", "exp", "log"}
KEEPS_DATA = RESHAPES | PERMUTES | {"contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16",
                                    "type", "type_as", "getitem", "data", "cpu", "cuda", "expand", "expand_as"}


class Reading:
    """What every rule reads from one trace: the graph, the fields, the output stage, the convs on maps."""

    def __init__(self, model: nn.Module, graph: Trace, input_shape):
        self.model, self.graph, self.input_shape = model, graph, input_shape
        self.known = fields(graph)
        self.stage = graph.stage
        self.probed = graph.probed_map
        self.needed = graph.ancestors([self.probed])
        self.convs = [op for op in graph.ops if op.index in self.needed and op.func == "conv2d"
                      and op.map_input.is_map]

    @cached_property
    def stages(self) -> dict:
        """{id of a Value: the max-pools on the longest way to it from the input}."""
        stages = {}
        for op in self.graph.ops:
            stage = max((stages.get(id(v), 0) for v in op.inputs), default=0) + self.is_transition(op)
            for value in op.outputs:
                stages[id(value)] = stage
        return stages

    def is_transition(self, op: Op) -> bool:
        """A max-pool that shrinks the map and leaves a map: one of the C1 C2 C3 C4 boundaries."""
        return op.func in ("max_pool2d", "adaptive_max_pool2d") and op.map_input.is_map and \
            op.outputs[0].is_map and op.outputs[0].grid != op.map_input.grid

    def head_text(self) -> str:
        if self.stage is None:
            return f"no output stage (the network returns a {self.probed.size_text} map)"
        return ", ".join([self.stage.first.kind, *describe_head(self.graph)])


def _architecture(r: Reading) -> tuple[str, bool]:
    pools = [op for op in r.graph.ops if op.index in r.needed and r.is_transition(op)]
    keeping = [op for op in r.graph.ops if op.index in r.needed and op.func == "max_pool2d" and
               op.map_input.is_map and op.outputs[0].grid == op.map_input.grid]
    depth = r.stages.get(id(r.probed), 0)
    per_stage = Counter(r.stages.get(id(op.map_input), 0) for op in r.convs)
    counts = [per_stage[stage] for stage in range(depth + 1)]
    pooled = f"{depth} max-pools" if len(pools) == depth else \
        f"{len(pools)} max-pools ({depth} on the longest path)"
    if keeping:
        pooled += f" (+{len(keeping)} that keep the map's size)"
    if r.stage is not None and r.stage.how == "max":  # a max-pool that leaves 1x1: no transition, the output stage
        pooled += f" (+{r.stage.first.name}, which leaves a 1x1 map: the output stage begins there)"
    empty = [f"C{block + 1}" for block, count in enumerate(counts) if count == 0]
    missing = f" ({' and '.join(empty)} {'has' if len(empty) == 1 else 'have'} no conv)" if empty else ""
    passed = depth == 3 and not empty and r.stage is not None
    return f"{pooled}; convs per block: {', '.join(map(str, counts))}{missing}; then {r.head_text()}", passed


def _receptive_field(r: Reading) -> tuple[str, bool]:
    field = r.known.get(id(r.probed))
    if field is None:
        return "none: no input pixel reaches the map the output stage reads", False
    if field.whole:
        return f"the whole input ({whole_since(r.graph, r.known)} merges a global pool back into the map)", True
    seen = _seen_through_partial_average(r)
    if seen is not None and not field.approximate:
        pool = r.stage.first
        return (f"{seen} px (analytic), what each logit sees: {pool.name} averages {_window_text(pool)} of the "
                f"{r.stage.map.size_text} map, not all of it, and one unit of that map has {field.size} px"), \
            seen > MIN_RF
    rf, how = field.size, "analytic"
    if field.approximate:
        try:
            rf, how = empirical_rf(r.model, r.input_shape), "measured by gradients"
        except ValueError as error:
            how = f"approximate: {error}"
        how += f"; the formulas cannot follow {field.approximate[0]}"
    return f"{rf} px ({how}){_as_a_conv(r)}", rf > MIN_RF


def _seen_through_partial_average(r: Reading) -> int | None:
    """For an output stage that averages windows of the map, not all of it (AvgPool2d(3) on a 4x4 map): the field
    of the pool's output, which the logits read; it adds the window to one unit's field. None for any other."""
    stage = r.stage
    if stage is None or stage.how != "mean" or stage.covers:
        return None
    out = r.known.get(id(stage.first.outputs[0]))
    return None if out is None or out.whole else out.size


def _as_a_conv(r: Reading) -> str:
    """For a conv as large as the map that ends it (no GAP): the field its output would have, were it counted as a
    conv rather than as the fully connected layer it is, so that a grader who counts it sees both numbers."""
    stage = r.stage
    if stage is None or stage.how != "conv" or not stage.covers:
        return ""
    out = r.known.get(id(stage.op.outputs[0]))
    if out is None or out.whole or out.size == r.known[id(r.probed)].size:
        return ""
    return (f"; {stage.op.name}, a {_kernel_text(stage.op)} conv on the whole {stage.map.size_text} map, is read as "
            f"a fully connected layer: counted as a conv, its output's field is {out.size} px")


def _followers(r: Reading, value: Value) -> tuple[list[Op], list[Op]]:
    """The convs that read `value` through element-wise ops and pads only, and the Linear layers that read its
    channels on a map (a ConvNeXt block's 1x1 conv, written channels-last); then the ops that end that walk before
    any of them (a max-pool, the global pool, a second path), to say why no conv follows.

    An element-wise op passes when every input it reads besides constants derives from `value` along that walk:
    x * sigmoid(x) (Swish), a channel LayerNorm written with means. Such ops read each position alone (no steps),
    so nothing spatial happens between the depthwise conv and what follows it."""
    found, stops, derived = [], [], {id(value)}
    for op in r.graph.ops:
        read = [v for v in op.inputs if id(v) in derived]
        if not read:
            continue
        first = op.inputs[0]
        if op.func == "conv2d" and id(op.map_input) in derived or op.func == "linear" and id(first) in derived \
                and first.is_map and first.dims[-1] not in SPATIAL:
            found.append(op)
        elif _element_wise(op, value) and all(id(v) in derived for v in op.inputs if not v.constant) or \
                op.func == "pad" and id(op.map_input) in derived:  # Conv2d(padding_mode="reflect") pads first
            derived.update(id(v) for v in op.outputs)
        else:
            stops.append(op)
    return found, stops


def _element_wise(op: Op, value: Value) -> bool:
    """The op computes each position of `value`'s map from that position alone, and a map of its size comes out."""
    out = op.outputs[0] if op.outputs else None
    return op.steps is None and op.func not in WEIGHTED | RESHAPES and out is not None and out.is_map and \
        out.grid == value.grid


def _window_text(op: Op) -> str:
    """The window a pool reads: "2x2"."""
    return "x".join(map(str, op.params.get("kernel", ()))) or "part"


def _kernel_text(op: Op) -> str:
    return "x".join(map(str, op.params["kernel"])) if "kernel" in op.params else "1x1"


def _is_pointwise_for(op: Op, depthwise: Op) -> bool:
    p, channels = op.params, depthwise.params["out_channels"]
    if op.func == "linear":
        return p["in_features"] == channels
    return p["kernel"] == (1, 1) and p["groups"] == 1 and p["in_channels"] == channels


def _not_separable(r: Reading, dw: Op) -> str:
    """Why the spatial depthwise conv `dw` is not followed by a pointwise one."""
    after, stops = _followers(r, dw.outputs[0])
    if not after:
        stop = stops[0] if stops else None
        if stop is None:
            return f"depthwise {dw.name} is not followed by a conv"
        if r.stage is not None and stop is r.stage.first:
            return (f"depthwise {dw.name} is followed by {stop.name}, the output stage: a 1x1 conv after the global "
                    f"pool is its fully connected layer, not a pointwise conv")
        what = f"{stop.name} ({stop.kind})" if stop.module is not None else stop.name
        return f"depthwise {dw.name} is followed by {what} before any conv, not by a 1x1 conv"
    pw = after[0]
    if pw.func == "linear":
        return f"depthwise {dw.name} is followed by {pw.name}, which does not take its channels"
    if pw.params["kernel"] != (1, 1):
        return f"depthwise {dw.name} is followed by {pw.name}, a {_kernel_text(pw)} conv, not a 1x1"
    if pw.params["groups"] != 1:
        return (f"depthwise {dw.name} is followed by {pw.name}, a 1x1 conv with groups {pw.params['groups']}: "
                f"it mixes no channels across its groups")
    return f"depthwise {dw.name} is followed by {pw.name}, which does not take its channels"


def _depthwise_separable(r: Reading) -> tuple[str, bool]:
    depthwise = [op for op in r.convs if op.params["groups"] == op.params["in_channels"] > 1]
    spatial = [op for op in depthwise if op.params["kernel"] != (1, 1)]
    pairs = [(dw, pw) for dw in spatial for pw in _followers(r, dw.outputs[0])[0][:1] if _is_pointwise_for(pw, dw)]
    if pairs:
        dw, pw = pairs[0]
        multiplier = dw.params["out_channels"] // dw.params["in_channels"]
        depth = f", depth multiplier {multiplier}" if multiplier > 1 else ""
        more = f" (+{len(pairs) - 1} more)" if len(pairs) > 1 else ""
        pointwise = "Linear on the channels: a 1x1 conv" if pw.func == "linear" else "1x1"
        return f"{dw.name} ({_kernel_text(dw)} depthwise{depth}) -> {pw.name} ({pointwise}){more}", True
    if spatial:  # every depthwise conv said, so that none a student counts on goes unmentioned
        return "; ".join(_not_separable(r, dw) for dw in spatial), False
    if depthwise:
        return f"{depthwise[0].name} is depthwise but 1x1: it filters nothing spatially", False
    return "no depthwise conv (groups == in_channels > 1)", False


def _dilated(r: Reading) -> tuple[str, bool]:
    def dilations(op):
        return [d for k, d in zip(op.params["kernel"], op.params["dilation"]) if d >= 2 and k > 1]
    dilated = [op for op in r.convs if dilations(op)]
    if dilated:
        op = dilated[0]
        return f"{op.name} ({_kernel_text(op)}, dilation {max(dilations(op))})", True
    useless = [op for op in r.convs if max(op.params["dilation"]) >= 2]
    if useless:
        op = useless[0]
        return (f"none: {op.name} has dilation {max(op.params['dilation'])} but a {_kernel_text(op)} kernel: "
                f"dilation changes nothing there"), False
    return "none: every conv has dilation 1", False


def _head_problem(r: Reading) -> str | None:
    """Why an op after the global pool is not one of the layers the assignment allows there, or None."""
    ours = {id(v) for v in r.stage.op.outputs} | {id(v) for op in r.stage.head for v in op.outputs}
    for op in r.stage.head:
        strangers = [v for v in op.inputs if not v.constant and id(v) not in ours]
        if strangers:
            source = strangers[0].producer.name if strangers[0].producer else "the input"
            return f"{op.name} ({op.func}) merges it with {source}, which does not come from the global pool"
        allowed = op.func in FULLY_CONNECTED | ACTIVATIONS | NORMS | DROPOUTS | KEEPS_DATA | ARITHMETIC or \
            (op.func in POOLS or op.func.startswith("adaptive_")) or op.func in ("cat", "stack", "concat")
        if not allowed:
            return f"{op.name} ({op.func}) is not a layer of the output stage"
    return None


def _undone_average(r: Reading) -> str | None:
    """A global average whose 1x1 result an op (upsampling, expand) makes a map again, or None. Multiplying a map
    by it (squeeze-and-excitation) is not that: the map was there already."""
    for op in r.graph.ops:
        out = op.outputs[0]
        if op.index not in r.needed or out.pooling is None or out.pooling.kind != "mean" or out.is_map:
            continue
        spreaders = [r.graph.ops[i] for i in sorted(r.graph.descendants(op)) if r.graph.ops[i].outputs[0].is_map
                     and not any(v.is_map for v in r.graph.ops[i].inputs)]
        if spreaders:
            return (f"{out.pooling.op.name} averages the {out.pooling.source.size_text} map to 1x1, but "
                    f"{spreaders[0].name} ({spreaders[0].func}) makes a {spreaders[0].outputs[0].size_text} map "
                    f"of it again")
    return None


def _global_average_pooling(r: Reading) -> tuple[str, bool]:
    stage = r.stage
    if stage is None:
        return f"none: the network returns a {r.probed.size_text} map", False
    name, size = stage.first.name, stage.map.size_text
    if stage.how == "mean" and stage.covers:
        head = describe_head(r.graph)
        problem = _head_problem(r)
        then = f", then {', '.join(head)}" if head else ""
        return f"{name} {size} -> 1x1{then}" + (f"; {problem}" if problem else ""), problem is None
    undone = _undone_average(r)
    if undone:
        return f"none: {undone}, which {name} ({stage.how}) then ends", False
    if stage.how == "mean":
        return f"none: {name} averages {_window_text(stage.first)} of the {size} map, not all of it", False
    averaged = [op.name for op in stage.head if op.func in ("avg_pool2d", "adaptive_avg_pool2d", "mean")]
    nothing = f"; {averaged[0]} then averages a 1x1 map: nothing" if averaged else ""
    if stage.how == "max":
        part = "" if stage.covers else f"{_window_text(stage.first)} of "
        return f"none: {name} takes the maximum of {part}the {size} map, not the average{nothing}", False
    if stage.how == "sum":
        return f"none: {name} sums the {size} map without dividing by its {stage.map.grid[0] * stage.map.grid[1]} " \
               f"positions: a sum, not an average", False
    if stage.how == "conv" and not stage.covers:
        stride = "x".join(map(str, dict.fromkeys(stage.op.params["stride"])))  # 2 for (2, 2), 2x1 for (2, 1)
        return (f"none: {name}, a {_kernel_text(stage.op)} conv with stride {stride} on the {size} map, reads only "
                f"part of it (neither an average nor a fully connected layer)"), False
    if stage.how == "conv":
        return (f"none: {name}, a {_kernel_text(stage.op)} conv on the {size} map, reduces it to 1x1 (a fully "
                f"connected layer, not an average){nothing}"), False
    if stage.how == "flatten":
        return f"none: {name} flattens the {size} map into features; nothing averages it", False
    return f"none: {name} ({stage.how}) ends the {size} map", False


# (name, required, check of the reading) for every requirement read from a forward pass
TRACED = [
    ("architecture C1 C2 C3 C4 O", "convs before, between and after exactly 3 max-pools, then the output stage",
     _architecture),
    ("receptive field", f"> {MIN_RF} px, one unit of the map the global pool averages (or the output stage reads)",
     _receptive_field),
    ("depthwise-separable conv", "depthwise conv (k > 1) -> 1x1 conv with groups 1", _depthwise_separable),
    ("dilated conv", "kernel > 1 with dilation >= 2", _dilated),
    ("global average pooling", "whole map averaged to 1x1; after it only FC or 1x1 convs, activations, norms, "
                               "dropout, reshapes, softmax", _global_average_pooling),
]
