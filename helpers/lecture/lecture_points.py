"""The lecture's points beside the zoo, each computed: the depthwise-separable cost formula on a real layer, the
worked example's numbers, why a transposed convolution makes a checkerboard, which pixels a dilated kernel
samples, the 1x1 convolution as a per-pixel channel mixer, and the transposed convolution's output size."""
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from ..convs import DepthwiseSeparableConv2d
from .zoo import LECTURE_INPUT, LECTURE_KERNEL, worked_example


def separable_costs(model: nn.Module) -> list[dict]:
    """Every depthwise-separable conv of `model`: its weights by the formula k^2 C_in + C_in C_out, the weights
    counted on the module, a normal conv's k^2 C_in C_out, and their ratio, which is 1/C_out + 1/k^2 whatever C_in
    (it cancels): the widest layers save the most, up to 1/k^2."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, DepthwiseSeparableConv2d):
            k, c_in = module.depthwise.kernel_size[0], module.depthwise.in_channels
            c_out = module.pointwise.out_channels
            separable, normal = k * k * c_in + c_in * c_out, k * k * c_in * c_out
            rows.append({"layer": name, "C_in": c_in, "C_out": c_out, "k": k, "k²·C_in + C_in·C_out": separable,
                         "counted": sum(p.numel() for p in module.parameters()), "k²·C_in·C_out": normal,
                         "ratio": f"{separable / normal:.4f}", "1/C_out + 1/k²": f"{1 / c_out + 1 / k ** 2:.4f}"})
    return rows


def grids_text(grids: dict) -> str:
    """Small 2-D integer grids side by side under their names: {"input": ..., "kernel": ...}."""
    columns = []
    for name, grid in grids.items():
        lines = [" ".join(f"{int(v):3d}" for v in row) for row in torch.as_tensor(grid).tolist()]
        width = max(len(name), *map(len, lines))
        columns.append([name.ljust(width)] + [line.ljust(width) for line in lines])
    height = max(map(len, columns))
    columns = [c + [" " * len(c[0])] * (height - len(c)) for c in columns]
    return "\n".join("    ".join(row).rstrip() for row in zip(*columns))


def worked_example_text() -> str:
    """The lecture's worked example: its input, its kernel and the output of padding 1, stride 1."""
    return grids_text({"input (5x5)": LECTURE_INPUT, "kernel (3x3)": LECTURE_KERNEL,
                       "output (padding 1, stride 1)": worked_example()})


def overlap_counts(kernel: int, stride: int, size: int = 4) -> torch.Tensor:
    """How many (input pixel, kernel tap) pairs land on each output pixel of a transposed convolution (no padding)
    of a size x size input: the kernel stamped at every stride-th output pixel, counted with all ones."""
    ones = torch.ones(1, 1, size, size)
    return F.conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel), stride=stride)[0, 0].round().int()


def interior_counts(kernel: int, stride: int) -> list[int]:
    """The distinct overlap counts away from the border: one value when stride divides the kernel, several
    (the checkerboard) when it does not (Odena et al. 2016)."""
    counts = overlap_counts(kernel, stride, size=kernel + 2)
    inner = counts[kernel - 1:-(kernel - 1), kernel - 1:-(kernel - 1)]
    return sorted(set(inner.flatten().tolist()))


def overlap_figure(cases=((3, 2), (4, 2)), size: int = 4) -> Figure:
    """overlap_counts for each (kernel, stride), the count written in every pixel: uneven for a kernel the stride
    does not divide, even (away from the border) for one it does."""
    fig = Figure(figsize=(3.2 * len(cases) + 0.4, 3.6), layout="constrained")
    for ax, (kernel, stride) in zip(fig.subplots(1, len(cases), squeeze=False)[0], cases):
        counts = overlap_counts(kernel, stride, size)
        ax.imshow(counts.numpy(), cmap="Blues", vmin=0, vmax=counts.max().item() * 1.3)
        for (row, column), value in zip(torch.cartesian_prod(*map(torch.arange, counts.shape)).tolist(),
                                        counts.flatten().tolist()):
            ax.text(column, row, value, ha="center", va="center", fontsize=8,
                    color="white" if value > counts.max().item() / 2 else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        divides = "divides" if kernel % stride == 0 else "does not divide"
        inside = ", ".join(map(str, interior_counts(kernel, stride)))
        ax.set_title(f"kernel {kernel}, stride {stride}: {stride} {divides} {kernel}\ninside: {inside} "
                     f"contribution{'s' * (inside != '1')} per pixel", fontsize=9)
    fig.suptitle(f"Transposed convolution of a {size}x{size} input of ones: contributions per output pixel",
                 fontsize=10)
    return fig


def dilated_taps(dilation: int, kernel: int = 3) -> torch.Tensor:
    """The (d(k-1)+1)-wide window of a dilated kernel, True at the pixels its k x k weights sample."""
    side = dilation * (kernel - 1) + 1
    taps = torch.zeros(side, side, dtype=torch.bool)
    taps[::dilation, ::dilation] = True
    return taps


def dilation_figure(dilations=(1, 2, 3), kernel: int = 3) -> Figure:
    """The pixels a k x k kernel samples at each dilation, on one canvas the size of the widest window."""
    side = max(dilations) * (kernel - 1) + 1
    fig = Figure(figsize=(2.4 * len(dilations) + 0.4, 2.9), layout="constrained")
    for ax, dilation in zip(fig.subplots(1, len(dilations), squeeze=False)[0], dilations):
        taps = dilated_taps(dilation, kernel)
        offset = (side - len(taps)) // 2
        canvas = torch.zeros(side, side)
        canvas[offset:offset + len(taps), offset:offset + len(taps)] = 0.25  # the window
        canvas[offset:offset + len(taps), offset:offset + len(taps)][taps] = 1.0  # the sampled pixels
        ax.imshow(canvas.numpy(), cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks([x - 0.5 for x in range(side + 1)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(side + 1)], minor=True)
        ax.grid(which="minor", color="silver", linewidth=0.5)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(f"dilation {dilation}: {int(taps.sum())} weights\nover a {len(taps)}x{len(taps)} window",
                     fontsize=9)
    fig.suptitle(f"The pixels a {kernel}x{kernel} kernel samples (black); grey: the rest of its window", fontsize=10)
    return fig


def pointwise_demo(seed: int = 0) -> dict:
    """A 1x1 convolution (3 -> 2 channels) on a 3-channel 2x2 image, beside the same numbers computed pixel by
    pixel as the weight matrix times the pixel's channel vector: {"image", "weight", "conv", "per_pixel"}."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(-3, 4, (3, 2, 2), generator=generator).float()
    weight = torch.randint(-2, 3, (2, 3), generator=generator).float()
    conv = F.conv2d(image[None], weight[:, :, None, None])[0]
    per_pixel = torch.stack([torch.stack([weight @ image[:, row, column] for column in range(2)], -1)
                             for row in range(2)], -2)
    return {"image": image, "weight": weight, "conv": conv, "per_pixel": per_pixel}


def pointwise_text(demo: dict) -> str:
    """pointwise_demo as text: each pixel's channel vector, the weights, and both outputs, which are equal."""
    image, weight, conv = demo["image"], demo["weight"], demo["conv"]
    lines = [f"1x1 conv weights W ({weight.shape[0]} out x {weight.shape[1]} in): {weight.int().tolist()}"]
    for row in range(image.shape[1]):
        for column in range(image.shape[2]):
            vector = image[:, row, column]
            lines.append(f"pixel ({row}, {column}): channels {vector.int().tolist()} -> W @ channels = "
                         f"{(weight @ vector).int().tolist()}; conv output there {conv[:, row, column].int().tolist()}")
    same = torch.equal(conv, demo["per_pixel"])
    lines.append(f"conv output equals W @ channels at every pixel: {same}")
    return "\n".join(lines)


def transposed_output_size(n: int, kernel: int, stride: int, padding: int = 0, output_padding: int = 0,
                           dilation: int = 1) -> int:
    """The transposed convolution's output size: (n - 1) s - 2p + d(k - 1) + output_padding + 1."""
    return (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


TRANSPOSED_CASES = ((4, 3, 2, 1, 1), (4, 4, 2, 1, 0), (5, 3, 2, 0, 0), (4, 3, 1, 1, 0), (3, 2, 2, 0, 0))


def transposed_size_table(cases=TRANSPOSED_CASES) -> list[dict]:
    """transposed_output_size for (n, k, s, p, output_padding) cases, beside the size torch's ConvTranspose2d
    gives: the formula is checked, not assumed."""
    rows = []
    for n, kernel, stride, padding, extra in cases:
        layer = nn.ConvTranspose2d(1, 1, kernel, stride, padding, output_padding=extra, bias=False)
        with torch.no_grad():
            measured = layer(torch.zeros(1, 1, n, n)).shape[-1]
        rows.append({"n_in": n, "k": kernel, "s": stride, "p": padding, "output_padding": extra,
                     "formula": transposed_output_size(n, kernel, stride, padding, extra), "torch": measured})
    return rows
