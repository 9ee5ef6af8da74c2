"""Figures for the notebook: sample images, training curves, misclassified test images; and the panels other
figure modules share (an image, a heatmap over an image).

Each function returns a matplotlib Figure, made without pyplot: nothing is shown or kept open behind the caller's
back (the notebook displays it, a test reads it, anyone may save it).
"""
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..evaluation import confusion_matrix, most_confident_mistakes


def _to_uint8(images) -> np.ndarray:
    """(N, 3, H, W) or (3, H, W) images, uint8 [0, 255] or float [0, 1], as uint8 (..., H, W, 3) for imshow."""
    images = torch.as_tensor(images).detach().cpu()
    if images.is_floating_point():
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images.movedim(-3, -1).numpy()


def show_image(ax, image, title, color="black"):
    """An image in a panel of its own, titled, without axes."""
    # nearest: a 32x32 image drawn as blocks of equal pixels, which PNG compresses many times better than
    # the smoothed pixels the default ("antialiased") interpolation makes when it upsamples by less than 3.
    ax.imshow(_to_uint8(image), interpolation="nearest")
    ax.set_title(title, fontsize=8, color=color)
    ax.axis("off")


def overlay(ax, image, heat, cmap: str = "inferno", smooth: bool = False):
    """A heatmap in [0, 1] drawn over an image, each pixel as opaque as its value, so the picture shows through
    where the map is 0; smooth: drawn bilinearly (a map upsampled from a coarse layer), else pixel by pixel.
    Returns the heatmap's artist, for a colour bar."""
    ax.imshow(_to_uint8(image), interpolation="nearest")
    heat = torch.as_tensor(heat).detach().cpu().double().clamp(0, 1).numpy()
    return ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.7 * heat,
                     interpolation="bilinear" if smooth else "nearest")


def mosaic(tiles, gap: int = 2, fill: int = 255) -> np.ndarray:
    """A rows x columns grid of equal-size uint8 (H, W, 3) images (None: blank) as one (H', W', 3) image.

    Tiles are separated by `gap` pixels of `fill` (white), so one imshow draws the grid.
    """
    height, width = next(t.shape[:2] for row in tiles for t in row if t is not None)
    rows, columns = len(tiles), max(len(row) for row in tiles)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), fill, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile is not None:
                top, left = r * (height + gap), c * (width + gap)
                grid[top:top + height, left:left + width] = tile
    return grid


def sample_grid(images, labels, classes, per_class: int = 4):
    """The first `per_class` images of every class, one row per class, so a reader sees what CIFAR-10 is.

    Drawn as ONE image (a mosaic) with the class names as y tick labels: a PNG a few times smaller than a grid
    of len(classes) x per_class axes, and quicker to draw.
    """
    labels = torch.as_tensor(labels).cpu()
    pictures = _to_uint8(images)
    tiles = []
    for row in range(len(classes)):
        index = torch.nonzero(labels == row).flatten()[:per_class].tolist()
        tiles.append([pictures[i] for i in index] + [None] * (per_class - len(index)))
    if all(t is None for row in tiles for t in row):
        raise ValueError("sample_grid: no image has a label in range(len(classes))")
    gap = 2
    grid = mosaic(tiles, gap=gap)
    height, width = pictures.shape[1:3]
    fig = Figure(figsize=(per_class * 0.55 + 1.6, len(classes) * 0.55 + 0.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([r * (height + gap) + (height - 1) / 2 for r in range(len(classes))], list(classes))
    ax.set_xticks([c * (width + gap) + (width - 1) / 2 for c in range(per_class)], range(1, per_class + 1))
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set(xlabel="example (first in the training set)", ylabel="class",
           title=f"CIFAR-10: {per_class} training images per class")
    return fig


def training_curves(history, title: str = ""):
    """Loss, and train/test accuracy, through training, from a history as returned by helpers.loop.train.

    The training lines follow every step where the history holds them (a one-epoch run still draws a curve),
    averaged over a twentieth of an epoch, as one batch is noisy; older histories give one point per epoch. The test
    accuracy (plain, no TTA) is measured at the end of each epoch. The x axis counts epochs, in fractions for a
    run of a few."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label, epoch_key in ((loss_ax, "step_loss", "train loss", "loss"),
                                      (acc_ax, "step_acc", "train (augmented)", "train_acc")):
        if all(key in h for h in history):
            x, y, window = step_series(history, key)
            ax.plot(x, y, "-", label=f"{label}, mean of {window} steps")
        else:
            ax.plot([h["epoch"] for h in history], [h[epoch_key] for h in history], "o-", label=label)
    steps = len(history[0].get("step_loss", [])) if history else 0
    epoch_label = f"epoch ({steps:,} steps each)" if steps else "epoch"
    loss_ax.set(xlabel=epoch_label, ylabel="cross-entropy (label-smoothed)", title="loss")
    tested = [h for h in history if h.get("test_acc") is not None]
    if tested:  # a run that did not evaluate per epoch has test_acc None throughout: no test line, no legend entry
        ends = dict(zip((h["epoch"] for h in history), epoch_ends(history)))
        acc_ax.plot([ends[h["epoch"]] for h in tested], [h["test_acc"] for h in tested], "s-",
                    label="test, plain (end of epoch)")
    acc_ax.set(xlabel=epoch_label, ylabel="accuracy (%)", title="accuracy" if tested else "accuracy (train only)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        # 30 epochs: 0, 5, 10, ..., not 1..30; one epoch: 0, 0.2, ..., 1, not a single tick
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=len(history) > 3, min_n_ticks=3))
    if title:
        fig.suptitle(title)
    return fig


def epoch_ends(history) -> list[float]:
    """Where each epoch ends on the x axis: at its number, a fractional last epoch at its share of a full one (the
    first epoch's steps)."""
    full = len(history[0].get("step_loss", [0]))
    return [h["epoch"] - 1 + len(h.get("step_loss", [0])) / full for h in history]


def step_series(history, key: str):
    """(x in epochs, the running mean of history's per-step `key`, the window in steps): step i of an epoch sits at
    e - 1 + (i + 1) / n, n a full epoch's steps, so that each epoch's last step meets its test point."""
    full = len(history[0][key])
    x = np.concatenate([h["epoch"] - 1 + np.arange(1, len(h[key]) + 1) / full for h in history])
    values = np.concatenate([h[key] for h in history])
    window = max(1, len(history[0][key]) // 20)
    means = np.convolve(values, np.ones(window) / window, mode="valid")
    return x[window - 1:], means, window


def misclassified_gallery(images, labels, logits, classes, count: int = 8, columns: int = 8, which: str = ""):
    """The test images the model gets wrong with the most confidence, titled "true -> predicted (p)"; `which`
    names the predictions in the title (plain, or with TTA)."""
    wrong, predicted, confidence = most_confident_mistakes(labels, logits, count)
    rows = max(1, -(-len(wrong) // columns))
    # constrained layout: each row's two-line titles get their own room, never over the images above them
    fig = Figure(figsize=(columns * 1.5, rows * 1.9), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, i in zip(axes.flat, wrong.tolist() + [None] * (rows * columns - len(wrong))):
        if i is None:
            ax.axis("off")
            continue
        title = f"{classes[labels[i]]}\n-> {classes[predicted[i]]} ({confidence[i]:.2f})"
        show_image(ax, images[i], title, color="crimson")
    fig.suptitle(f"The {len(wrong)} most confident mistakes{f' ({which})' if which else ''}, of "
                 f"{(predicted != labels.cpu()).sum().item():,} in all")
    return fig


def confusion_figure(labels, logits, classes, which: str = ""):
    """The confusion matrix with counts in each cell and each class's accuracy on the y axis; `which` names the
    predictions in the title (plain, or with TTA)."""
    counts = confusion_matrix(labels, logits.argmax(1), len(classes))
    per_class = 100 * counts.diag() / counts.sum(1)
    fig = Figure(figsize=(6.2, 5.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(counts.numpy(), cmap="Blues")
    for (t, p), n in zip(torch.cartesian_prod(torch.arange(len(classes)), torch.arange(len(classes))).tolist(),
                         counts.flatten().tolist()):
        ax.text(p, t, n, ha="center", va="center", fontsize=8, color="white" if n > counts.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c} ({a:.1f}%)" for c, a in zip(classes, per_class.tolist())])
    ax.set(xlabel="predicted", ylabel="true (per-class accuracy)",
           title=f"Confusion matrix, test set{f', {which} predictions' if which else ''}")
    return fig
