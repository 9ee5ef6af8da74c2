"""The effective receptive field and the gridding of dilated stacks, drawn for the notebook: each returns a Figure.

Every panel draws the theoretical receptive field as a dashed square, so the effective one is seen inside it.
"""
import matplotlib
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .erf import (
    BLOCKS,
    GRIDDING_STACKS,
    RFSquare,
    effective_rfs,
    erf_square_sides,
    measured_holes,
    path_counts,
    rf_squares,
    stack_rf,
)


def draw_rf_square(ax, square: RFSquare, shape, colour: str = "cyan") -> None:
    """The theoretical field as a dashed square in pixel coordinates; the view widens to hold all of it where it
    reaches past the image of `shape` (height, width)."""
    low, high = square.centre - square.side / 2, square.centre + square.side / 2
    ax.add_patch(Rectangle((low, low), square.side, square.side, fill=False, edgecolor=colour, linestyle="--",
                           linewidth=1.2))
    height, width = shape
    ax.set_xlim(min(-0.5, low) - 0.5, max(width - 0.5, high) + 0.5)
    ax.set_ylim(max(height - 0.5, high) + 0.5, min(-0.5, low) - 0.5)


TICK_STEPS = (1, 2, 5, 10, 20, 50, 100)  # pixels between ticks: the first that gives at most 2 each side


def _erf_panel(ax, block: str, erf, square: RFSquare):
    """One block's effective field scaled to its peak, inside its theoretical square, the view cropped to that
    square and a margin (the margin stops at the probe image's edge, so no blank band shows), ticks counting
    pixels from the unit's centre (each panel has its own zoom), and titled with the sides of the squares that hold
    half and 95% of it. Returns the artist for the colour bar."""
    half, most = erf_square_sides(erf, square.centre)
    artist = ax.imshow((erf / erf.max()).numpy(), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
    draw_rf_square(ax, square, erf.shape)
    low, high = square.centre - square.side / 2 - 0.5, square.centre + square.side / 2 + 0.5
    reach = square.side / 2 + max(2, square.side // 4)
    view = (min(low, max(-0.5, square.centre - reach)), max(high, min(erf.shape[-1] - 0.5, square.centre + reach)))
    ax.set_xlim(*view)
    ax.set_ylim(*view[::-1])
    step = next((s for s in TICK_STEPS if reach / s <= 2), TICK_STEPS[-1])
    offsets = range(-int(reach // step) * step, int(reach // step) * step + 1, step)
    ticks = [(square.centre + o, f"{o:g}") for o in offsets if view[0] <= square.centre + o <= view[1]]
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=7)
    ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=7)
    ax.set_title(f"{block}: RF {square.side} px\n50% in {half}, 95% in {most} px", fontsize=9)
    return artist


def erf_figure(untrained, trained, images, blocks=BLOCKS) -> Figure:
    """The effective field of each block's centre unit for an untrained (top) and a trained (bottom) network.

    images: what the gradients are averaged over, (N, 3, H, W): noise images wider than the whole field, as Luo et
    al. Each panel is scaled to its own peak (a c1 field is far more concentrated than a c4 one) and shows its
    theoretical square with a margin, so that small and large fields are drawn at a readable size.
    """
    fig = Figure(figsize=(1.9 * len(blocks) + 1.2, 5.0), layout="constrained")
    axes = fig.subplots(2, len(blocks), squeeze=False)
    squares = rf_squares(trained, blocks, tuple(images.shape[1:]))
    for row, (label, model) in zip(axes, (("untrained", untrained), ("trained", trained))):
        for ax, (block, erf) in zip(row, effective_rfs(model, blocks, images).items()):
            artist = _erf_panel(ax, block, erf, squares[block])
        row[0].set_ylabel(label)
    fig.colorbar(artist, ax=axes, shrink=0.8).set_label("|gradient|, share of the panel's peak", fontsize=9)
    fig.suptitle(f"Effective receptive field over {len(images)} noise images of {images.shape[-2]}x"
                 f"{images.shape[-1]} px; dashed: the theoretical field\nticks: pixels from the unit's centre, "
                 f"each panel zoomed to its own field", fontsize=10)
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
        ax.set_xticks(ticks, [f"{t - centre:g}" for t in ticks], fontsize=8)
        ax.set_yticks(ticks, [f"{t - centre:g}" for t in ticks], fontsize=8)
        ax.set_xlabel("column offset (px)", fontsize=9)
        ax.set_title(f"dilations {', '.join(map(str, dilations))}: RF {stack_rf(dilations)} px\n"
                     f"{int(measured_holes(dilations).sum())} holes in the RF", fontsize=9)
    axes[0].set_ylabel("row offset (px)", fontsize=9)
    fig.colorbar(artist, ax=list(axes), shrink=0.8, label="paths to the centre output (white: none)")
    fig.suptitle("Gridding: stacked 3x3 convolutions, every weight set to 1", fontsize=10)
    return fig
