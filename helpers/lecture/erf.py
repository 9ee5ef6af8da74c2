"""The effective receptive field (Luo et al., NeurIPS 2016) and the gridding of dilated stacks (Wang et al. 2018).

The theoretical receptive field says which input pixels CAN reach an output unit; the effective one measures how
much each of them does: the mean absolute gradient of the unit with respect to the input pixels, over many images.
It is zero outside the theoretical field by construction, and much narrower than it: paths through the middle of
the field are many, paths to its edge are few. A dilated stack shows the extreme case: with one dilation repeated,
some pixels inside the field have no path at all (gridding, the "holes" of Wang et al.).
"""
from typing import NamedTuple

import torch
from torch import nn

from ..checker.receptive_field import rf_table
from .probes import as_input, probe_copy, recorded_outputs
from .zoo import conv_stack

BLOCKS = ("c1", "c2", "c3", "c4")  # a C1C2C3C4O network's blocks, each probed at its output, before the next pool
GRIDDING_STACKS = ((1, 1, 1), (2, 2, 2), (1, 2, 4))  # three 3x3 convolutions each: the same 27 weights


def noise_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """n uniform-noise images (n, 3, size, size) in [0, 1], Luo et al.'s input: no image content favours a side."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def image_mosaic(images, n: int, side: int) -> torch.Tensor:
    """n images (n, 3, side, side) tiled from the first of `images` (uint8 or [0, 1], square): natural content as
    wide as the whole field, the check that a change seen on noise_images is the network's, not the noise's."""
    images = as_input(images)
    tiles = side // images.shape[-1]
    if tiles < 1 or side % images.shape[-1] or len(images) < n * tiles * tiles:
        raise ValueError(f"{n} mosaics of {side} px need {n * max(tiles, 1) ** 2} images whose side divides {side}")
    grid = images[:n * tiles * tiles].reshape(n, tiles, tiles, *images.shape[1:])  # (n, row, column, C, H, W)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(n, images.shape[1], side, side)


def gradient_maps(model: nn.Module, blocks, images) -> dict:
    """{block: (H, W) mean over the images of |d centre unit / d input pixel|, summed over colour channels}.

    The centre unit is position (H' // 2, W' // 2) of the block's output, its channels summed; "" names the whole
    model. Taken on probes.probe_copy (eval mode: the images do not interact, so one backward pass of their sum
    gives each image's gradient), one forward pass for all blocks.
    """
    net = probe_copy(model)
    x = as_input(images).requires_grad_(True)
    with recorded_outputs(net, blocks) as outputs:
        net(x)
    maps = {}
    for i, block in enumerate(blocks):
        output = outputs[block]
        if output.dim() != 4:
            raise ValueError(f"{block or 'the model'} outputs {tuple(output.shape)}, not a map (N, C, H, W)")
        centre = output[:, :, output.shape[-2] // 2, output.shape[-1] // 2].sum()
        gradient, = torch.autograd.grad(centre, x, retain_graph=i + 1 < len(blocks))
        maps[block] = gradient.abs().sum(1).mean(0)
    return maps


def effective_rfs(model: nn.Module, blocks, images) -> dict:
    """{block: effective_rf(model, block, images)}, all from one forward pass."""
    maps = gradient_maps(model, blocks, images)
    if any(m.sum() == 0 for m in maps.values()):
        raise ValueError("no gradient reaches the input from a probed unit (a dead network?)")
    return {block: m / m.sum() for block, m in maps.items()}


def effective_rf(model: nn.Module, block: str, images) -> torch.Tensor:
    """The effective receptive field of the centre unit of `block`'s output, as an (H, W) map summing to 1.

    block: a submodule's name ("c1" .. "c4" for a C1C2C3C4O network: the block's output before its pool; "" for
    the whole model). images: (N, C, H, W), uint8 or float in [0, 1]: real images, or noise_images(n) as Luo et al.
    The map is the mean absolute input gradient (gradient_maps), so it measures the pixels of these images only:
    a field larger than the image is cut off at its border. The model is not changed (a float32 CPU copy).
    """
    return effective_rfs(model, [block], images)[block]


class RFSquare(NamedTuple):
    """The theoretical receptive field of a probed unit: its side and where its centre lies in the input, in
    pixels (the same for rows and columns; a half-integer when the side is even)."""
    side: int
    centre: float


def rf_squares(model: nn.Module, blocks, input_shape=(3, 32, 32)) -> dict:
    """{block: the theoretical field of the unit effective_rf probes}: r_out of the block's last spatial layer in
    receptive_field.rf_table, centred where the windows put that unit.

    Output position i's field starts at start + i * j_out, so its centre is start + i * j_out + (r_out - 1) / 2, for
    branches too. Square kernels, strides and images assumed; a field the formulas only estimate is refused.
    """
    table = rf_table(model, input_shape)
    squares = {}
    for block in blocks:
        inside = [row for row in table if not row["output_stage"] and (
            not block or row["name"] == block or row["name"].startswith(block + "."))]
        if not inside:
            raise ValueError(f"{block!r} holds no spatial layer")
        row = inside[-1]
        if row["approximate"]:
            raise ValueError(f"the formulas only estimate this block's field ({'; '.join(row['why'])})")
        centre = row["start"] + row["n_out"] // 2 * row["j_out"] + (row["r_out"] - 1) / 2
        squares[block] = RFSquare(row["r_out"], centre)
    return squares


def erf_square_sides(erf: torch.Tensor, centre: float | None = None, fractions=(0.5, 0.95)) -> tuple:
    """The side in pixels of the smallest square around `centre` holding each fraction of the map's mass.

    centre: row and column in pixels (rf_squares'); the middle of the map, (size - 1) / 2, by default. A pixel is
    in the squares of side 2 * max(|row - centre|, |column - centre|) + 1 and up, so the sides step by 2: odd around
    a pixel, even around the corner of four. A square reaching past the map holds the part inside it.
    """
    height, width = erf.shape
    rows = torch.arange(height, dtype=torch.float64)[:, None] - ((height - 1) / 2 if centre is None else centre)
    columns = torch.arange(width, dtype=torch.float64)[None, :] - ((width - 1) / 2 if centre is None else centre)
    sides, which = torch.unique(2 * torch.maximum(rows.abs(), columns.abs()) + 1, return_inverse=True)
    mass = torch.zeros(len(sides), dtype=torch.float64).index_add_(0, which.flatten(), erf.double().flatten())
    held = mass.cumsum(0) / mass.sum()
    return tuple(int(sides[int((held < fraction - 1e-9).sum())].round()) for fraction in fractions)


def erf_table(models: dict, images, blocks=BLOCKS) -> list:
    """One row per block: the theoretical field's side, then for each of `models` ({label: model}, e.g. untrained
    and trained) the sides of the squares holding 50% and 95% of its effective field over `images`; print it with
    zoo.format_table."""
    squares = rf_squares(next(iter(models.values())), blocks, tuple(images.shape[1:]))
    table = [{"block": block, "theoretical RF": squares[block].side} for block in blocks]
    for label, model in models.items():
        for row, (block, erf) in zip(table, effective_rfs(model, blocks, images).items()):
            row[f"50% in ({label})"], row[f"95% in ({label})"] = erf_square_sides(erf, squares[block].centre)
    return table


def stack_rf(dilations) -> int:
    """The receptive field of conv_stack(dilations): each 3x3 at dilation d adds 2d pixels."""
    return 1 + 2 * sum(dilations)


def path_counts(dilations, side: int | None = None) -> torch.Tensor:
    """(side, side): how many paths lead from each input pixel to the centre output of conv_stack(dilations).

    With every weight 1 the input gradient counts the paths (gradient_maps on an image of ones; the effective field
    is this divided by its sum, 9 ** layers). side: the canvas, stack_rf(dilations) by default.
    """
    stack = conv_stack(dilations)
    for conv in stack:
        nn.init.ones_(conv.weight)
    side = side or stack_rf(dilations)
    return gradient_maps(stack, [""], torch.ones(1, 1, side, side))[""]


def measured_holes(dilations) -> torch.Tensor:
    """The pixels inside the theoretical field that no path reaches: a (RF, RF) mask, measured by path_counts."""
    return path_counts(dilations) == 0
