"""The S7 assignment's requirements, each read on the graph of what the model computes, as a careful grader reads
them: module or functional, branches included (helpers.trace records one forward pass; helpers.receptive_field
puts the windows on it). format_checks renders the results as a table.

The reading, rule by rule:
- architecture: C1 C2 C3 C4 O, convs before, between and after exactly 3 max-pools (a max-pool that keeps the map's
  size is no transition; one that leaves 1x1 of the map is a global pool). C4 needs a conv that runs on the map
  before the global pool; the output stage starts at the global pool, so convs after it (1x1 on the 1x1 map, fully
  connected layers) are the head, not C4.
- receptive field: one unit of the map the global pool averages, > 44 px (the GAP window is not added).
- depthwise-separable: a depthwise conv (groups == in_channels > 1, kernel larger than 1x1; a depth multiplier
  counts) followed, possibly through normalisation, activation or dropout, by a 1x1 conv with groups == 1 that takes
  its channels. A grouped 1x1 mixes no channels across its groups; a 1x1 depthwise filters nothing spatially.
- dilated: a kernel larger than 1 with dilation >= 2 (dilation changes nothing for a 1x1 kernel).
- global average pooling: the whole map averaged to 1x1, in any form (AdaptiveAvgPool2d(1), an AvgPool2d as large as
  the map, F.adaptive_avg_pool2d, F.avg_pool2d(x, x.shape[-1]), x.mean((2, 3)), x.view(n, c, -1).mean(-1), a sum
  divided by the number of positions). A sum alone is not an average, nor a max. After it only layers that act on
  the 1x1 map: fully connected (Linear, a conv on the 1x1 map), activations, normalisation, dropout, reshapes,
  (log-)softmax, arithmetic with constants.
- parameters < 1,000,000, every parameter counted.
- device and accuracy: what one model object can show. Uses-the-GPU is "not checked here" on a machine without one;
  the accuracy is "not checked here" when none is given (python -m helpers.check measures no accuracy).
"""
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from .device import pick_device
from .models import count_parameters
from .receptive_field import (ACTIVATIONS, DROPOUTS, NORMS, describe_head, empirical_rf, fields, text_table,
                              whole_since)
from .trace import PERMUTES, POOLS, RESHAPES, SPATIAL, Op, Trace, Value, trace

MIN_RF, MAX_PARAMS, MIN_ACCURACY = 44, 1_000_000, 80.0
PASS, FAIL, NOT_CHECKED = "pass", "fail", "not checked here"


@dataclass(frozen=True)
class Check:
    """One requirement: what it asks, what the model has, and whether that is enough (state: PASS, FAIL, or
    NOT_CHECKED where this machine or this call cannot tell)."""
    name: str
    required: str
    measured: str
    state: str

    @property
    def passed(self) -> bool:
        return self.state == PASS

    @property
    def failed(self) -> bool:
        return self.state == FAIL


def _verdict(passed: bool) -> str:
    return PASS if passed else FAIL


def _map_text(value: Value) -> str:
    return value.size_text


FULLY_CONNECTED = {"linear", "matmul", "mm", "addmm", "bmm", "conv2d"}
ARITHMETIC = {"add", "sub", "rsub", "mul", "div", "rdiv", "neg", "pow", "clamp", "clip", "abs", "exp", "log"}
KEEPS_DATA = RESHAPES | PERMUTES | {"contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16",
                                    "type", "type_as", "getitem", "data", "cpu", "cuda", "expand", "expand_as"}
PASS_THROUGH = ACTIVATIONS | NORMS | DROPOUTS | ARITHMETIC | {"contiguous", "clone", "detach", "to", "float", "data"}


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
            return f"no output stage (the network returns a {_map_text(self.probed)} map)"
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
    passed = depth == 3 and min(counts) >= 1 and r.stage is not None
    return f"{pooled}, convs {'|'.join(map(str, counts))}, then {r.head_text()}", passed


def _receptive_field(r: Reading) -> tuple[str, bool]:
    field = r.known.get(id(r.probed))
    if field is None:
        return "none: no input pixel reaches the map the output stage reads", False
    if field.whole:
        return f"the whole input ({whole_since(r.graph, r.known)} merges a global pool back into the map)", True
    rf, how = field.size, "analytic"
    if field.approximate:
        try:
            rf, how = empirical_rf(r.model, r.input_shape), "measured by gradients"
        except ValueError as error:
            how = f"approximate: {error}"
        how += f"; the formulas cannot follow {field.approximate[0]}"
    return f"{rf} px ({how})", rf > MIN_RF


def _followers(r: Reading, value: Value) -> list[Op]:
    """The convs that read `value` through element-wise ops only (normalisation, activation, dropout), and the
    Linear layers that read its channels on a map (a ConvNeXt block's 1x1 conv, written channels-last)."""
    found, todo, seen = [], [value], set()
    while todo:
        current = todo.pop()
        for op in r.graph.consumers(current):
            if op.index in seen:
                continue
            seen.add(op.index)
            if op.func == "conv2d" and op.map_input is current or op.func == "linear" and current.is_map and \
                    op.inputs[0] is current and current.dims[-1] not in SPATIAL:
                found.append(op)
            elif (op.func in PASS_THROUGH or op.func in PERMUTES) and sum(not v.constant for v in op.inputs) == 1 \
                    and op.outputs and sorted(op.outputs[0].shape) == sorted(current.shape):
                todo.extend(op.outputs)
    return sorted(found, key=lambda op: op.index)


def _kernel_text(op: Op) -> str:
    return "x".join(map(str, op.params["kernel"])) if "kernel" in op.params else "1x1"


def _is_pointwise_for(op: Op, depthwise: Op) -> bool:
    p, channels = op.params, depthwise.params["out_channels"]
    if op.func == "linear":
        return p["in_features"] == channels
    return p["kernel"] == (1, 1) and p["groups"] == 1 and p["in_channels"] == channels


def _depthwise_separable(r: Reading) -> tuple[str, bool]:
    depthwise = [op for op in r.convs if op.params["groups"] == op.params["in_channels"] > 1]
    spatial = [op for op in depthwise if op.params["kernel"] != (1, 1)]
    pairs = [(dw, pw) for dw in spatial for pw in _followers(r, dw.outputs[0])[:1] if _is_pointwise_for(pw, dw)]
    if pairs:
        dw, pw = pairs[0]
        multiplier = dw.params["out_channels"] // dw.params["in_channels"]
        depth = f", depth multiplier {multiplier}" if multiplier > 1 else ""
        more = f" (+{len(pairs) - 1} more)" if len(pairs) > 1 else ""
        pointwise = "Linear on the channels: a 1x1 conv" if pw.func == "linear" else "1x1"
        return f"{dw.name} ({_kernel_text(dw)} depthwise{depth}) -> {pw.name} ({pointwise}){more}", True
    if spatial:
        dw = spatial[0]
        after = _followers(r, dw.outputs[0])
        if not after:
            return f"depthwise {dw.name} is not followed by a conv", False
        pw = after[0]
        if pw.func == "linear":
            return f"depthwise {dw.name} is followed by {pw.name}, which does not take its channels", False
        if pw.params["kernel"] != (1, 1):
            return f"depthwise {dw.name} is followed by {pw.name}, a {_kernel_text(pw)} conv, not a 1x1", False
        if pw.params["groups"] != 1:
            return (f"depthwise {dw.name} is followed by {pw.name}, a 1x1 conv with groups {pw.params['groups']}: "
                    f"it mixes no channels across its groups"), False
        return f"depthwise {dw.name} is followed by {pw.name}, which does not take its channels", False
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
            return (f"{out.pooling.op.name} averages the {_map_text(out.pooling.source)} map to 1x1, but "
                    f"{spreaders[0].name} ({spreaders[0].func}) makes a {_map_text(spreaders[0].outputs[0])} map "
                    f"of it again")
    return None


def _global_average_pooling(r: Reading) -> tuple[str, bool]:
    stage = r.stage
    if stage is None:
        return f"none: the network returns a {_map_text(r.probed)} map", False
    name, size = stage.first.name, _map_text(stage.map)
    if stage.how == "mean" and stage.covers:
        head = describe_head(r.graph)
        problem = _head_problem(r)
        then = f", then {', '.join(head)}" if head else ""
        return f"{name} {size} -> 1x1{then}" + (f"; {problem}" if problem else ""), problem is None
    undone = _undone_average(r)
    if undone:
        return f"none: {undone}, which {name} ({stage.how}) then ends", False
    if stage.how == "mean":
        window = "x".join(map(str, stage.first.params.get("kernel", ())))
        return f"none: {name} averages {window} of the {size} map, not all of it", False
    if stage.how == "max":
        return f"none: {name} takes the maximum of the {size} map, not the average", False
    if stage.how == "sum":
        return f"none: {name} sums the {size} map without dividing by its {stage.map.grid[0] * stage.map.grid[1]} " \
               f"positions: a sum, not an average", False
    if stage.how == "conv":
        averaged = [op.name for op in stage.head if (op.func in POOLS or op.func.startswith("adaptive_avg"))]
        later = f"; {averaged[0]} then averages a 1x1 map: nothing" if averaged else ""
        return (f"none: {name}, a {_kernel_text(stage.op)} conv on the {size} map, reduces it to 1x1 (a fully "
                f"connected layer, not an average){later}"), False
    if stage.how == "flatten":
        return f"none: {name} flattens the {size} map into features; nothing averages it", False
    return f"none: {name} ({stage.how}) ends the {size} map", False


# (name, required, check of the reading) for every requirement read from a forward pass
TRACED = [
    ("architecture C1 C2 C3 C4 O", "convs before, between and after exactly 3 max-pools, then the output stage",
     _architecture),
    ("receptive field", f"> {MIN_RF} px, one unit of the map the global pool averages", _receptive_field),
    ("depthwise-separable conv", "depthwise conv (k > 1) -> 1x1 conv with groups 1", _depthwise_separable),
    ("dilated conv", "kernel > 1 with dilation >= 2", _dilated),
    ("global average pooling", "whole map averaged to 1x1, then only FC (Linear, conv on 1x1), activation, norm, "
                               "dropout, reshape, softmax", _global_average_pooling),
]

ACCELERATORS = ("cuda", "mps", "xpu", "meta")  # meta: the stand-in for a GPU in tests, it holds no data


def _device_check(model: nn.Module, device: torch.device | None) -> Check:
    """Uses the GPU: the parameters on the device the run chose, which is the GPU when the machine has one.
    Without a GPU here it cannot be observed: not checked here, saying what pick_device() chooses and why."""
    devices = {parameter.device for parameter in model.parameters()}
    chosen = pick_device()
    here = (f"pick_device() picks {chosen}" if chosen.type != "cpu" else
            "pick_device() picks cpu: torch finds no CUDA GPU and no Apple MPS here")
    where = f"on {', '.join(sorted(map(str, devices)))}" if devices else "no parameters"
    required = "on the GPU when there is one" if device is None else f"on {device}, the device the run chose"
    if not devices:
        return Check("device", required, f"{where}; {here}", FAIL)
    if device is not None and not all(found.type == device.type and device.index in (None, found.index)
                                       for found in devices):
        return Check("device", required, f"{where}; {here}", FAIL)
    if len(devices) == 1 and next(iter(devices)).type in ACCELERATORS:
        return Check("device", required, f"{where}; {here}", PASS)
    if chosen.type != "cpu" and device is not None:
        return Check("device", required, f"{where}, though {here}", FAIL)
    reason = "" if chosen.type == "cpu" else " (a model on the CPU: give device=, the device its run uses)"
    return Check("device", required, f"{where}; {here}{reason}", NOT_CHECKED)


def _accuracy_check(test_accuracy, tta_accuracy=None) -> Check:
    """The plain accuracy is the one that counts; the accuracy with test-time augmentation is shown beside it."""
    if isinstance(test_accuracy, list):
        test_accuracy = test_accuracy[-1]["test_acc"] if test_accuracy else None
    required = f">= {MIN_ACCURACY:g}% without TTA"
    if test_accuracy is None:
        return Check("test accuracy", required, "not measured: give test_accuracy", NOT_CHECKED)
    beside = f" ({tta_accuracy:.2f}% with TTA)" if tta_accuracy is not None else ""
    return Check("test accuracy", required, f"{test_accuracy:.2f}%{beside}", _verdict(test_accuracy >= MIN_ACCURACY))


def _traced_checks(model: nn.Module, graph: Trace, input_shape) -> list[Check]:
    reading = Reading(model, graph, input_shape)
    checks = []
    for name, required, rule in TRACED:
        try:
            measured, passed = rule(reading)
        except Exception as error:  # a network no rule foresaw: said, not raised
            measured, passed = f"this checker cannot read it: {type(error).__name__}: {error}", False
        checks.append(Check(name, required, measured, _verdict(passed)))
    return checks


def check_s7(model: nn.Module, test_accuracy=None, *, tta_accuracy=None, device: torch.device | None = None,
             input_shape=(3, 32, 32)) -> list[Check]:
    """One Check per requirement, always the same 8 in the same order; a non-compliant model fails, never raises.

    device: where the parameters must be (the device a run chose). The row passes when they are on a GPU, fails
    when they are elsewhere than `device` or on the CPU of a machine with a GPU, and is not checked on a machine
    without a GPU. test_accuracy: the plain accuracy (0-100) or a training history, a list of dicts whose last
    "test_acc" (plain) counts; tta_accuracy, shown beside it; without one the row is not checked.
    If the forward pass on a (2, *input_shape) batch fails, every check read from it fails and says why.
    """
    try:
        graph = trace(model, input_shape)
    except Exception as error:  # any model the assignment could be given: report, do not crash
        first_line = str(error).partition("\n")[0]
        reason = f"forward on {(2, *input_shape)} failed: {type(error).__name__}: {first_line}"
        traced = [Check(name, required, reason, FAIL) for name, required, _ in TRACED]
    else:
        traced = _traced_checks(model, graph, input_shape)
    parameters = count_parameters(model)
    return [_device_check(model, device), *traced,
            Check("parameters", f"< {MAX_PARAMS:,}", f"{parameters:,}", _verdict(parameters < MAX_PARAMS)),
            _accuracy_check(test_accuracy, tta_accuracy)]


RESULT = {PASS: "PASS", FAIL: "FAIL", NOT_CHECKED: "not checked here"}


def format_checks(results: list[Check]) -> str:
    """A fixed-width table, one row per requirement (PASS, FAIL or not checked here), then the counts."""
    lines = [["requirement", "required", "measured", "result"],
             *([check.name, check.required, check.measured, RESULT[check.state]] for check in results)]
    counts = Counter(check.state for check in results)
    total = f"{counts[PASS]} passed, {counts[FAIL]} failed"
    if counts[NOT_CHECKED]:
        total += f", {counts[NOT_CHECKED]} not checked here"
    return "\n".join([*text_table(lines, right_from=len(lines[0])), total])
