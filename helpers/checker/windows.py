"""The receptive field as window arithmetic on the traced graph: every tensor carries its window along each axis.

One element i of a map sees the input pixels start + i * jump up to start + i * jump + size - 1. A conv or pool of
kernel k, stride s, padding p and dilation d updates it (size += d(k - 1) jump, start -= p jump, jump *= s);
element-wise ops pass it on; a merge (add, cat, mul) takes the union of its inputs' windows, which is exact for
branches: each branch's window is its own, not the sum of both. The windows are approximate only where an
element's window is not of that form, and then say which op and why (upsampling, transposed conv, an adaptive pool
of uneven windows, a map whose size an unknown op changes).
"""
from fractions import Fraction
from typing import NamedTuple

from .graph import AXES, Op, Trace


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
        return number(max(self.h.size, self.w.size))

    @property
    def whole(self) -> bool:
        return self.h.fixed or self.w.fixed


def number(value):
    """An int where a Fraction is whole (jumps become fractions only after upsampling)."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else value


def per_axis(h, w):
    """One number for a square layer, (height, width) otherwise."""
    h, w = number(h), number(w)
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


def whole_since(graph: Trace, known: dict) -> str:
    """The op where a global pool's result first goes back into a map (squeeze-and-excitation): from there on, every
    unit's field is the whole input."""
    return next((op.name for op in graph.ops if op.steps is None and op.outputs[0].is_map
                 and id(op.outputs[0]) in known and known[id(op.outputs[0])].whole), "an op")
