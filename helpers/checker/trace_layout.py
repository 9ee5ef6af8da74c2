"""How a tensor's height and width move through reshapes, permutes and indexing, and the records a handler of
helpers.checker.trace_ops fills for one call."""
from typing import NamedTuple

import torch

from .graph import AXES, KEEP, SPATIAL, Pooling, Step, Value


class Call(NamedTuple):
    """One call of a torch function, as the recorder hands it to a handler."""
    func: str
    args: tuple
    kwargs: dict
    inputs: list  # Values of the tensor arguments, in order
    results: list  # output tensors


class Reading(NamedTuple):
    """What a handler reads from one call: parameters, steps, and the layout (dims, grid) of its outputs."""
    params: dict
    steps: dict | None
    dims: tuple | None  # labels of the outputs' dims; None: from the base input by shape
    pooling: Pooling | None = None
    grid: tuple | None = None  # the outputs' map size when the dims alone cannot say it (HW)


def grid_of(dims, shape) -> tuple:
    """(height, width) read from the dims labelled H and W: 1 where there is none."""
    sizes = dict(zip(dims, shape))
    return sizes.get("H", 1), sizes.get("W", 1)


def regroup(before, after) -> list:
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


def reshape_dims(x: Value, after: tuple) -> tuple:
    """The labels of a reshape's output dims: a height or width kept alone keeps its label, height and width merged
    become "HW" (view(N, C, -1)), and merged with channels they are gone (a flatten)."""
    labels = [None] * len(after)
    for group_in, group_out in regroup(x.shape, after):
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


def permuted_dims(call: Call) -> tuple | None:
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


def index_reading(call: Call) -> Reading | None:
    """x[...]: slices crop a map (a step with an offset), ints select one row or column, None adds a dim."""
    x, index = call.inputs[0], call.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(item, (torch.Tensor, list)) for item in items):
        spatial = any(label in SPATIAL and size > 1 for label, size in zip(x.dims, x.shape))
        return Reading({}, {axis: Step(1, 1, 0, False, "advanced indexing of a map") for axis in AXES}
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
    return Reading({}, {axis: steps.get(axis, KEEP) for axis in AXES} if steps else None, tuple(labels))
