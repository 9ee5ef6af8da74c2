"""The graph of one forward pass (helpers.checker.trace records it): tensors as Values, torch calls as Ops, and
where the spatial map ends.

Every Value knows which of its dimensions are the image's height and width ("H", "W", or "HW" once view(N, C, -1)
merges them) and how large the map is; every Op, how its output positions read its input's (a Step per axis:
kernel span, stride, offset), which is all helpers.checker.windows needs; the Trace, where the spatial map ends
(Trace.stage): the global pool in any of its forms, or a flatten, or a conv as large as the map.
"""
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import NamedTuple

import torch
from torch import nn

AXES = ("H", "W")
SPATIAL = ("H", "W", "HW")
RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "ravel"}


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
    positions: int  # how many positions each output combines
    covers: bool  # every position of the map (an AvgPool2d(4) on a 5x5 map covers 16 of 25)


@dataclass(eq=False)
class Value:
    """A tensor of the forward pass as the graph sees it."""
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
    """The graph of one forward pass: ops in the order they ran, the input, the outputs, the names of the
    model's parameters the ops read, and where forward turned a value computed from the input into a Python one
    (`if x.mean() > 0.5`, x.item()): "bool of mean", one per place, each a choice this trace saw one side of."""
    ops: list
    input: Value
    outputs: list
    parameters_read: frozenset
    choices: tuple

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
