"""Receptive field of a CNN, two ways: the classic layer-by-layer formulas and the gradient ground truth.

rf_table follows the layers in the order they run (forward hooks on a dummy input), so layers nested in
blocks need no special handling. The formulas assume a simple chain. In a residual or parallel block the
order is not one, and from the first layer whose input size does not follow from the previous spatial
layer's output, rows are marked approximate. empirical_rf measures the receptive field from gradients and
stays exact for any model. Only modules are seen: a layer called through torch.nn.functional is invisible.
"""
import copy
import itertools
from typing import NamedTuple

import torch
from torch import nn

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
SPATIAL_LAYERS = (nn.Conv2d, *POOLS)


class Call(NamedTuple):
    """One call of a leaf module in a forward pass: qualified name, module, input and output shapes."""
    name: str
    module: nn.Module
    in_shape: tuple | None
    out_shape: tuple | None


def _shape(value) -> tuple | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _trace(model: nn.Module, image: torch.Tensor) -> list[tuple[Call, torch.Tensor, torch.Tensor]]:
    """Run model(image) with a hook on every leaf module: each call with its input and output tensors."""
    calls = []

    def record(name):
        def hook(module, inputs, output):
            first_input = inputs[0] if inputs else None
            calls.append((Call(name, module, _shape(first_input), _shape(output)), first_input, output))
        return hook

    for name, module in model.named_modules():
        if not any(module.children()):
            module.register_forward_hook(record(name))
    model(image)
    return calls


def execution_order(model: nn.Module, input_shape=(3, 32, 32)) -> list[Call]:
    """Every leaf-module call of one forward pass of a batch of ones, on an eval-mode deep copy.

    The dummy input goes on the device and dtype of the model's own tensors, wherever they are.
    """
    model = copy.deepcopy(model).eval()
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    with torch.no_grad():
        return [call for call, _, _ in _trace(model, torch.ones(1, *input_shape, device=device, dtype=dtype))]


def _first(value):
    """Square kernels and strides are assumed: (3, 3) -> 3."""
    return value[0] if isinstance(value, tuple) else value


def _geometry(call: Call) -> tuple[int, int, int, int]:
    """(kernel, stride, padding, dilation) as ints; adaptive pooling becomes the windows that tile its input."""
    module, n_in, n_out = call.module, call.in_shape[-2], call.out_shape[-2]
    if isinstance(module, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)):
        stride = max(n_in // n_out, 1)
        return n_in - (n_out - 1) * stride, stride, 0, 1
    kernel, dilation = _first(module.kernel_size), _first(getattr(module, "dilation", 1))
    padding = module.padding
    if isinstance(padding, str):  # Conv2d's "valid" or "same"
        padding = 0 if padding == "valid" else dilation * (kernel - 1) // 2
    return kernel, _first(module.stride), _first(padding), dilation


def is_global_pool(call: Call) -> bool:
    """A pooling call whose single output position sees its whole input map (GAP and its kin)."""
    if not isinstance(call.module, POOLS) or call.out_shape[-2:] != (1, 1):
        return False
    kernel, _, _, dilation = _geometry(call)
    return dilation * (kernel - 1) + 1 >= call.in_shape[-2]


def _kind(module: nn.Module, kernel: int, dilation: int, global_pool: bool) -> str:
    if isinstance(module, nn.Conv2d):
        if module.groups == module.in_channels > 1:
            return "depthwise conv"
        if kernel == 1:
            return "pointwise conv"
        return "dilated conv" if dilation > 1 else "conv"
    pool = "max-pool" if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) else "avg-pool"
    return f"global {pool}" if global_pool else pool


def rf_rows(calls: list[Call], input_size: int) -> list[dict]:
    """The receptive-field table of traced calls (see rf_table); input_size is the image height."""
    rows, n, j, r, approximate = [], input_size, 1, 1, False
    for call in calls:
        if not isinstance(call.module, SPATIAL_LAYERS):
            continue
        kernel, stride, padding, dilation = _geometry(call)
        k_eff = dilation * (kernel - 1) + 1
        approximate = approximate or call.in_shape[-2] != n
        n, j_out, r_out, global_pool = call.out_shape[-2], j * stride, r + (k_eff - 1) * j, is_global_pool(call)
        rows.append({"name": call.name or type(call.module).__name__,
                     "kind": _kind(call.module, kernel, dilation, global_pool), "kernel": kernel, "stride": stride,
                     "padding": padding, "dilation": dilation, "k_eff": k_eff, "n_in": call.in_shape[-2],
                     "n_out": n, "j_in": j, "j_out": j_out, "r_in": r, "r_out": r_out, "global_pool": global_pool,
                     "approximate": approximate})
        j, r = j_out, r_out
    return rows


def rf_table(model: nn.Module, input_shape=(3, 32, 32)) -> list[dict]:
    """One row per spatial layer (Conv2d of any kind, max/avg/adaptive pooling) in execution order.

    n is the spatial size, j the jump (input pixels between neighbouring outputs), r the receptive field:
    j_out = j_in * s and r_out = r_in + (k_eff - 1) * j_in with k_eff = d * (k - 1) + 1. n comes from the
    shapes actually seen, so it equals floor((n_in + 2p - d(k-1) - 1) / s) + 1 (ceil for ceil_mode pools).
    Adaptive pooling counts as the window that tiles its input: to 1x1 that is the whole remaining map,
    which is why the meaningful receptive field is final_rf's, the one before global pooling. Sizes are
    heights; a tuple kernel, stride, padding or dilation is read by its first element (square assumed).
    Keys "global_pool" and "approximate" (see the module docstring) complete each row.
    """
    return rf_rows(execution_order(model, input_shape), input_shape[-2])


def _final_index(rows: list[dict]) -> int | None:
    """The last row before the first global pool (or the last row): the map that pooling summarises."""
    first_global = next((i for i, row in enumerate(rows) if row["global_pool"]), len(rows))
    return first_global - 1 if first_global else None


def final_rf(rows: list[dict]) -> int:
    """The network's receptive field: r_out of the last spatial layer before global pooling (1 if none)."""
    index = _final_index(rows)
    return 1 if index is None else rows[index]["r_out"]


def text_table(lines: list[list[str]], right_from: int) -> list[str]:
    """Fixed-width columns, left-aligned before column right_from and right-aligned from it on."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return ["  ".join(cell.rjust(width) if i >= right_from else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines]


def format_rf_table(rows: list[dict]) -> str:
    """A fixed-width text table for the notebook, ending with the final receptive field. A global pool's row says
    "whole map" where a receptive field would be: it pools everything the layer before it sees, whose field is the
    network's (the formula would add its window's size to it, a number that means nothing)."""
    header = ["layer", "kind", "k", "s", "p", "d", "n in->out", "j in->out", "r in->out", ""]
    lines = [[row["name"], row["kind"],
              *(str(row[key]) for key in ("kernel", "stride", "padding", "dilation")),
              *(f"{row[key + '_in']} -> {row[key + '_out']}" for key in "nj"),
              f"{row['r_in']} -> {'whole map' if row['global_pool'] else row['r_out']}",
              "*" if row["approximate"] else ""] for row in rows]
    text = text_table([header, *lines], right_from=2)
    index = _final_index(rows)
    if index is None:
        text.append("final receptive field: 1 px (no spatial layer before global pooling)")
    else:
        where = "the last layer before global pooling" if index + 1 < len(rows) else "the last spatial layer"
        text.append(f"final receptive field: {rows[index]['r_out']} px (at {rows[index]['name']}, {where})")
    if any(row["approximate"] for row in rows):
        text.append("* approximate: the layers do not run as a simple chain (branches); empirical_rf is exact")
    return "\n".join(text)


def _positive_copy(model: nn.Module) -> nn.Module:
    """A float64 CPU copy where every path carries signal, so the input gradient is non-zero exactly on the RF.

    Conv and linear weights become 1/fan-in (positive, activations stay near 1), biases 0, BatchNorm the
    identity; with a positive input every ReLU passes. Max-pools become average pools of the same windows,
    since a max-pool sends the gradient to one element per window. float64 (not on Apple's MPS, hence the
    CPU) keeps the gradient far from the centre clear of underflow.
    """
    net = copy.deepcopy(model).to("cpu", torch.float64).eval().requires_grad_(False)  # only the input's grad
    with torch.no_grad():
        for module in list(net.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.reset_parameters()  # running mean 0, var 1, weight 1, bias 0
            for name, child in module.named_children():
                if isinstance(child, nn.MaxPool2d):
                    if _first(child.dilation) != 1:
                        raise ValueError(f"{name}: a dilated max-pool has no average-pool equivalent")
                    setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                       ceil_mode=child.ceil_mode))
    return net


def _extent(mask: torch.Tensor) -> int:
    hits = mask.nonzero()
    return int(hits[-1] - hits[0] + 1)


def empirical_rf(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """The receptive field measured by gradients: how far one output position's input gradient reaches.

    The probed map is the input of the first global pooling layer (the map final_rf describes), or the
    output of the last spatial layer when there is none. The probe is its centre position (H // 2, W // 2),
    all channels summed, and the result is the larger of the height and width of the non-zero region of the
    input gradient. It is clipped by the image border: use an input large enough to hold the whole RF
    around the centre, e.g. (3, 128, 128) for S7Net, whose RF is 74.
    """
    image = torch.ones(1, *input_shape, dtype=torch.float64, requires_grad=True)
    traced = [(call, first_input, output) for call, first_input, output in _trace(_positive_copy(model), image)
              if isinstance(call.module, SPATIAL_LAYERS)]
    if not traced:
        raise ValueError("the model has no spatial layer")
    rows = rf_rows([call for call, _, _ in traced], input_shape[-2])
    first_global = next((i for i, row in enumerate(rows) if row["global_pool"]), None)
    feature_map = traced[-1][2] if first_global is None else traced[first_global][1]
    feature_map[0, :, feature_map.shape[-2] // 2, feature_map.shape[-1] // 2].sum().backward()
    reached = image.grad[0].ne(0).any(0)
    return max(_extent(reached.any(1)), _extent(reached.any(0)))
