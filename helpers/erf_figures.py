"""The effective receptive field and the gridding of dilated stacks, drawn for the notebook: each returns a Figure.

Every panel draws the theoretical receptive field as a dashed square, so the effective one is seen inside it.
"""
import matplotlib
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .erf import (BLOCKS, GRIDDING_STACKS, RFSquare, effective_rfs, erf_square_sides, measured_holes, path_counts,
                  rf_squares, stack_rf)
from .plots import overlay


def draw_rf_square(ax, square: RFSquare, shape, colour: str = "cyan") -> None:
    """The theoretical field as a dashed square in pixel coordinates; the view widens to hold all of it where it
    reaches past the image of `shape` (height, width)."""
    low, high = square.centre - square.side / 2, square.centre + square.side / 2
    ax.add_patch(Rectangle((low, low), square.side, square.side, fill=False, edgecolor=colour, linestyle="--",
                           linewidth=1.2))
    height, width = shape
    ax.set_xlim(min(-0.5, low) - 0.5, max(width - 0.5, high) + 0.5)
    ax.set_ylim(max(height - 0.5, high) + 0.5, min(-0.5, low) - 0.5)


def _erf_panel(ax, block: str, erf, square: RFSquare, image=None):
    """One block's effective field scaled to its peak, over `image` when given, inside its theoretical square, and
    titled with the sides of the squares that hold half and 95% of it. Returns the artist for the colour bar."""
    half, most = erf_square_sides(erf, square.centre)
    scaled = erf / erf.max()
    if image is None:
        artist = ax.imshow(scaled.numpy(), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
    else:
        artist = overlay(ax, image, scaled)
    draw_rf_square(ax, square, erf.shape)
    ax.set_title(f"{block}: RF {square.side} px\n50% in {half}, 95% in {most} px", fontsize=8)
    ax.set_xticks([])  # a picture: its scale is in the titles; the frame shows where the image ends
    ax.set_yticks([])
    return artist


def _erf_row(axes, model, blocks, images, image=None):
    """One model's panels, left to right; returns the last artist, for the colour bar."""
    squares = rf_squares(model, blocks, tuple(images.shape[1:]))
    for ax, (block, erf) in zip(axes, effective_rfs(model, blocks, images).items()):
        artist = _erf_panel(ax, block, erf, squares[block], image)
    return artist


def _colour_bar(fig, artist, axes) -> None:
    fig.colorbar(artist, ax=axes, shrink=0.8).set_label("|gradient|, share of the panel's peak", fontsize=8)


def erf_figure(untrained, trained, images, blocks=BLOCKS) -> Figure:
    """The effective field of each block's centre unit for an untrained (top) and a trained (bottom) network.

    images: what the gradients are averaged over, (N, 3, H, W): noise_images(32, size=64) as Luo et al. (the
    whole field of S7AirNet's c4 then fits), or real test images (a 32x32 image cuts the larger fields off). Each
    panel is scaled to its own peak, as a c1 field is far more concentrated than a c4 one.
    """
    fig = Figure(figsize=(2.2 * len(blocks) + 1, 5.4), layout="constrained")
    axes = fig.subplots(2, len(blocks), squeeze=False)
    for row, (label, model) in zip(axes, (("untrained", untrained), ("trained", trained))):
        artist = _erf_row(row, model, blocks, images)
        row[0].set_ylabel(label)
    _colour_bar(fig, artist, axes)
    fig.suptitle(f"Effective receptive field, {len(images)} images of {images.shape[-2]}x{images.shape[-1]} px; "
                 f"dashed: the theoretical one", fontsize=10)
    return fig


def erf_over_image_figure(model, images, shown: int = 0, blocks=BLOCKS) -> Figure:
    """The effective fields measured over real 32x32 images (N, 3, 32, 32), drawn over image `shown` of them.

    The blob is what the unit mostly looks at; the dashed square, what it could look at. The gradient is measured
    on these pixels only: where the square reaches past the image, the field is cut off at the border.
    """
    fig = Figure(figsize=(2.4 * len(blocks) + 1, 3.2), layout="constrained")
    axes = fig.subplots(1, len(blocks), squeeze=False)[0]
    artist = _erf_row(axes, model, blocks, images, image=images[shown])
    _colour_bar(fig, artist, axes)
    fig.suptitle(f"Effective receptive field over {len(images)} test images, drawn on image {shown}; "
                 f"dashed: the theoretical one", fontsize=10)
    return fig


def gridding_figure(stacks=GRIDDING_STACKS) -> Figure:
    """Paths from each input pixel to the centre output of three stacked 3x3 convolutions, one panel per dilation
    pattern, on one canvas and one log scale: the pixels no path reaches (white) inside the dashed theoretical
    field are the holes of gridding (Wang et al. 2018); ticks count pixels from the centre."""
    side = max(stack_rf(dilations) for dilations in stacks) + 2
    centre = (side - 1) / 2
    counts = [path_counts(dilations, side) for dilations in stacks]
    norm = LogNorm(1, max(float(c.max()) for c in counts))
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="white", under="white")
    fig = Figure(figsize=(2.6 * len(stacks) + 1, 3.4), layout="constrained")
    axes = fig.subplots(1, len(stacks), squeeze=False)[0]
    for ax, dilations, count in zip(axes, stacks, counts):
        artist = ax.imshow(count.numpy(), cmap=colours, norm=norm, interpolation="nearest")
        draw_rf_square(ax, RFSquare(stack_rf(dilations), centre), count.shape, colour="black")
        ticks = range(side // 2 % 4, side, 4)
        ax.set_xticks(ticks, [f"{t - centre:g}" for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [f"{t - centre:g}" for t in ticks], fontsize=7)
        ax.set_xlabel("column offset (px)", fontsize=8)
        ax.set_title(f"dilations {', '.join(map(str, dilations))}: RF {stack_rf(dilations)} px\n"
                     f"{int(measured_holes(dilations).sum())} holes in the RF", fontsize=9)
    axes[0].set_ylabel("row offset (px)", fontsize=8)
    fig.colorbar(artist, ax=list(axes), shrink=0.8, label="paths to the centre output (white: none)")
    fig.suptitle("Gridding: stacked 3x3 convolutions, every weight set to 1", fontsize=10)
    return fig
