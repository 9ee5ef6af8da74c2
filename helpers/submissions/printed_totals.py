"""The parameter total a notebook printed, against the network's own count, and why they differ.

torchsummary adds up the `weight` and `bias` of every module each time it runs: a module called twice counts twice,
one never called not at all, and a parameter by another name (an nn.Parameter of the network's own) never. Its
count is redone here with the same rule, so that a difference is explained, not only shown.
"""
import re

import torch
from torch import nn

from ..models import count_parameters
from .notebook_cells import Cell, printed_lines

TOTAL = re.compile(r"total params:\s*([\d,]+)", re.IGNORECASE)  # torchsummary's and torchinfo's line
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def printed_total(cells: list[Cell]) -> tuple[int, Cell] | None:
    """The last "Total params: N" the notebook printed, and its cell."""
    found = None
    for cell in cells:
        for line in printed_lines(cell.output_text):
            match = TOTAL.search(line)
            if match:
                found = int(match.group(1).replace(",", "")), cell
    return found


def summary_count(model: nn.Module, input_shape) -> int:
    """What torchsummary prints for `model`: each non-container module's weight and bias, once per call."""
    counted = []

    def count(module, inputs, output):
        counted.append(sum(tensor.numel() for tensor in (getattr(module, "weight", None), getattr(module, "bias", None))
                           if isinstance(tensor, torch.Tensor)))

    hooks = [module.register_forward_hook(count) for module in model.modules()
             if module is not model and not isinstance(module, CONTAINERS)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(counted)


def total_note(cells: list[Cell], model: nn.Module, input_shape) -> str | None:
    """None when the notebook printed no total or the network's own; else the two counts and the reason."""
    printed = printed_total(cells)
    own = count_parameters(model)
    if printed is None or printed[0] == own:
        return None
    total, cell = printed
    said = f"printed {total:,} ({cell.label}); the network has {own:,}"
    try:
        summary = summary_count(model, input_shape)
    except Exception:  # the forward pass fails: the rule rows say why
        summary = None
    if summary == total:
        return f"{said}: " + ("torchsummary counts a module called twice twice" if total > own else
                              "torchsummary leaves out modules never called and parameters not named weight or bias")
    return f"{said}: the printed total is of another network, or an earlier version of this one"
