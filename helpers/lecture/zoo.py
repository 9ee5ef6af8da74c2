"""The lecture's convolution zoo, measured: cost tables, the worked example, checkerboards, receptive fields.

Every number here is computed from the modules in helpers.convs, so the tables cannot drift from the code.
"""
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..checker.receptive_field import empirical_rf
from ..convs import (
    DepthwiseSeparableConv2d,
    PixelShuffleUpsample,
    ResizeConvUpsample,
    SpatiallySeparableConv2d,
    TransposedConvUpsample,
    conv3x3,
    dilated_conv,
    grouped_conv,
)
from ..models import count_macs
from ..tables import text_table

LECTURE_INPUT = [[2, 2, 3, 3, 3], [0, 1, 3, 0, 3], [2, 3, 0, 1, 3], [3, 3, 2, 1, 2], [3, 3, 0, 2, 3]]
LECTURE_KERNEL = [[2, 0, 1], [1, 0, 0], [0, 1, 1]]


def conv_zoo(in_channels: int = 16, out_channels: int = 32) -> dict:
    """One of each convolution for the same job, in_channels -> out_channels at 3x3, size kept."""
    return {
        "normal 3x3": conv3x3(in_channels, out_channels),
        "depthwise-separable": DepthwiseSeparableConv2d(in_channels, out_channels),
        "spatially separable": SpatiallySeparableConv2d(in_channels, out_channels),
        "grouped (groups=4)": grouped_conv(in_channels, out_channels, groups=4),
        "dilated (dilation=2)": dilated_conv(in_channels, out_channels, dilation=2),
    }


def upsampler_zoo(in_channels: int = 16, out_channels: int = 32) -> dict:
    """One of each x2 learned upsampler, 3x3 kernels, in_channels -> out_channels."""
    return {
        "transposed conv": TransposedConvUpsample(in_channels, out_channels),
        "pixel shuffle (ICNR)": PixelShuffleUpsample(in_channels, out_channels),
        "resize-conv": ResizeConvUpsample(in_channels, out_channels),
    }


def cost_row(name: str, module: nn.Module, input_shape) -> dict:
    """Weights, MACs and output shape (C, H, W) of a module on one image of input_shape."""
    with torch.no_grad():
        output_shape = tuple(module(torch.zeros(1, *input_shape)).shape[1:])
    return {"block": name, "params": sum(p.numel() for p in module.parameters()),
            "MACs": count_macs(module, input_shape), "output": output_shape}


def conv_table(in_channels: int = 16, out_channels: int = 32, size: int = 32) -> list:
    """The lecture's comparison: conv_zoo's costs on a size x size input, plus each layer's receptive field."""
    input_shape = (in_channels, size, size)
    return [{**cost_row(name, conv, input_shape), "RF": empirical_rf(conv, input_shape)}
            for name, conv in conv_zoo(in_channels, out_channels).items()]


def upsampler_table(in_channels: int = 16, out_channels: int = 32, size: int = 32) -> list:
    """upsampler_zoo's costs for x2 upsampling of a size x size input."""
    input_shape = (in_channels, size, size)
    return [{"block": name, "input": input_shape, **cost_row(name, upsampler, input_shape)}
            for name, upsampler in upsampler_zoo(in_channels, out_channels).items()]


def _cell(value) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def format_table(rows: list) -> str:
    """Fixed-width plain text: text columns left-aligned, numbers right-aligned with thousands separators."""
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    return "\n".join(text_table([columns, *cells], [not isinstance(rows[0][c], str) for c in columns], rule=True))


def worked_example() -> torch.Tensor:
    """The lecture's 5x5 input, zero-padded by 1, cross-correlated (F.conv2d, stride 1) with its 3x3 kernel.

    Returns the 5x5 output; its top-left 3x3 is the lecture's [[1, 6, 5], [7, 10, 9], [7, 10, 8]]. A true
    convolution (the kernel flipped) would give other numbers: deep learning's "convolution" does not flip.
    """
    image = torch.tensor(LECTURE_INPUT, dtype=torch.float32)[None, None]
    kernel = torch.tensor(LECTURE_KERNEL, dtype=torch.float32)[None, None]
    return F.conv2d(image, kernel, padding=1)[0, 0]


def checkerboard_score(image) -> float:
    """Fraction of a 2-D image's spectral energy at the Nyquist frequency, in rows or columns (even sizes only).

    By Parseval the total is the image's sum of squares. The Nyquist bins hold exactly the patterns that repeat
    every 2 pixels, the checkerboard of a stride-2 upsampler: 0 for any nearest-upsampled image, 1 for
    (-1)^(i+j), 0.5 for 1 + (-1)^(i+j).
    """
    image = torch.as_tensor(image, dtype=torch.float64)
    height, width = image.shape
    if height % 2 or width % 2:
        raise ValueError(f"checkerboard_score needs even sizes, got {height}x{width}")
    power = torch.fft.fft2(image).abs() ** 2
    total = power.sum()
    if total == 0:
        return 0.0
    nyquist = power[height // 2].sum() + power[:, width // 2].sum() - power[height // 2, width // 2]
    return float(nyquist / total)


def checkerboard_demo(image, seed: int = 0) -> dict:
    """A 2-D image and each x2 upsampler of upsampler_zoo(1, 1), initialised with `seed`, applied to it.

    Returns {name: (image, checkerboard score)}, the input first. Zero padding changes every output's outermost
    pixels whatever the upsampler, so outputs are scored without a 2-pixel border (one input pixel).
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        upsamplers = upsampler_zoo(1, 1)
    results = {"input": (image, checkerboard_score(image))}
    with torch.no_grad():
        for name, upsampler in upsamplers.items():
            output = upsampler(image[None, None])[0, 0]
            results[name] = (output, checkerboard_score(output[2:-2, 2:-2]))
    return results


def upsampler_reading(seed: int = 0) -> str:
    """What checkerboard_figure's pictures show besides the checkerboard, read from checkerboard_demo: the level
    random weights give a constant image (its sign decides whether the bump comes out bright or dark), and the
    frame zero padding leaves at the border."""
    results = checkerboard_demo(torch.ones(16, 16), seed)
    flat = {name: output for name, (output, score) in results.items() if name != "input" and score < 0.01}
    levels = {name: float(output[2:-2, 2:-2].mean()) for name, output in flat.items()}
    frame = max(float((torch.cat([o[:2].flatten(), o[-2:].flatten(), o[:, :2].flatten(), o[:, -2:].flatten()])
                       - levels[name]).abs().max()) for name, o in flat.items())
    dark = [name for name, level in levels.items() if level < 0]
    return (f"The upsamplers start from random weights (seed {seed}), so a constant image of 1 comes out at another "
            f"level: inside the border, {', '.join(f'{n} {v:+.2f}' for n, v in levels.items())} (the kernel's "
            f"weights summed, plus the bias; a checkerboard has no single level). "
            + (f"A negative level turns every picture over: {' and '.join(dark)} draw{'s' * (len(dark) == 1)} the "
               f"bump dark. " if dark else "")
            + f"At the border the zero padding leaves part of each kernel outside the picture, so the outermost "
              f"pixels differ from the inside by up to {frame:.2f}: the frame in the pictures, which the scores "
              f"leave out.")


def smooth_bump(size: int = 16) -> torch.Tensor:
    """A size x size raised-cosine bump: a smooth test image that fades to 0 at its border."""
    window = torch.hann_window(size + 2, periodic=False)[1:-1]
    return torch.outer(window, window)


def shared_range(pictures) -> tuple:
    """(vmin, vmax) over all the pictures, one colour scale for a row of them.

    An all-constant row (vmin == vmax) is widened by 0.5 either side, so its value shows mid-grey, not black.
    """
    low = min(float(p.min()) for p in pictures)
    high = max(float(p.max()) for p in pictures)
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def checkerboard_figure(seed: int = 0) -> Figure:
    """checkerboard_demo on a constant image (top) and a smooth bump (bottom), titled with the scores.

    Each row shares one grey scale (its colorbar on the right), so its pictures can be compared: the constant
    input shows at its true level within the row's range instead of an autoscaled, meaningless black.
    """
    demos = [checkerboard_demo(image, seed) for image in (torch.ones(16, 16), smooth_bump(16))]
    fig = Figure(figsize=(2.2 * len(demos[0]) + 1, 2.5 * len(demos) + 0.4), layout="constrained")
    for axes, results, label in zip(fig.subplots(len(demos), len(demos[0])), demos, ("constant", "smooth bump")):
        vmin, vmax = shared_range([picture for picture, _ in results.values()])
        for ax, (name, (picture, score)) in zip(axes, results.items()):
            image = ax.imshow(picture.numpy(), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{name} {picture.shape[0]}x{picture.shape[1]}\ncheckerboard {score:.3f}", fontsize=9)
            ax.set_xticks([])  # an image: no ticks, but a frame, so a white (maximal) picture still shows
            ax.set_yticks([])
        fig.colorbar(image, ax=list(axes), shrink=0.8, label=f"value, {label} row")
    fig.suptitle("x2 upsamplers: constant image (top), smooth bump (bottom); one grey scale per row", fontsize=10)
    return fig


def conv_stack(dilations) -> nn.Sequential:
    """Single-channel 3x3 convolutions, one per dilation, stacked: the smallest net that shows how fields grow."""
    return nn.Sequential(*(conv3x3(1, 1, dilation=d) for d in dilations))


def rf_growth(depth: int = 4) -> list:
    """Receptive field of 1..depth stacked 3x3 convs, normal versus dilated 1, 2, 4, 8, ...

    Analytic: each stride-1 3x3 at dilation d adds 2d pixels, so 2L + 1 (linear) versus 2^(L+1) - 1
    (exponential); measured: helpers.checker.receptive_field.empirical_rf on an input wider than the largest field.
    """
    input_shape = (1, 2 ** (depth + 2), 2 ** (depth + 2))
    rows = []
    for layers in range(1, depth + 1):
        normal, dilated = [1] * layers, [2 ** i for i in range(layers)]
        rows.append({"depth": layers, "dilation": dilated[-1],
                     "normal": 1 + 2 * sum(normal), "dilated": 1 + 2 * sum(dilated),
                     "normal measured": empirical_rf(conv_stack(normal), input_shape),
                     "dilated measured": empirical_rf(conv_stack(dilated), input_shape)})
    return rows


def rf_growth_figure(depth: int = 4) -> Figure:
    """Receptive field against depth: analytic lines, empirical_rf's measurements as crosses."""
    rows = rf_growth(depth)
    depths = [r["depth"] for r in rows]
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for key, label in (("normal", "3x3, dilation 1"), ("dilated", "3x3, dilation 1, 2, 4, ...")):
        line, = ax.plot(depths, [r[key] for r in rows], "o-", label=label)
        ax.plot(depths, [r[f"{key} measured"] for r in rows], "x", color=line.get_color(), markersize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers and pixels are whole numbers
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("stacked layers")
    ax.set_ylabel("receptive field (pixels)")
    ax.set_title("Receptive field: linear versus exponential growth")
    ax.legend(title="o analytic, x measured")
    return fig
