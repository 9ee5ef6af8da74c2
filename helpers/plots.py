"""Figures for the notebook: sample images, training curves, misclassified test images.

Each function returns a matplotlib Figure (shown by the notebook, saved or tested by anyone else).
"""
import matplotlib.pyplot as plt
import torch


def _show(ax, image, title, color="black"):
    ax.imshow(image.permute(1, 2, 0).cpu().numpy())
    ax.set_title(title, fontsize=8, color=color)
    ax.axis("off")


def sample_grid(images, labels, classes, per_class: int = 8):
    """The first `per_class` images of every class, one row per class, so a reader sees what CIFAR-10 is."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95))
    for row, name in enumerate(classes):
        index = torch.nonzero(labels.cpu() == row).flatten()[:per_class]
        for col, ax in enumerate(axes[row]):
            if col < len(index):
                _show(ax, images[index[col]], name if col == 0 else "")
            else:
                ax.axis("off")
    fig.tight_layout()
    return fig


def training_curves(history, title: str = ""):
    """Loss, and train/test accuracy, per epoch from a history as returned by helpers.train.train."""
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss_ax.plot(epochs, [h["loss"] for h in history], "o-", label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy (label-smoothed)", title="loss")
    acc_ax.plot(epochs, [h["train_acc"] for h in history], "o-", label="train (augmented)")
    tested = [h for h in history if h["test_acc"] is not None]
    acc_ax.plot([h["epoch"] for h in tested], [h["test_acc"] for h in tested], "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def misclassified_gallery(images, labels, logits, classes, count: int = 24, columns: int = 8):
    """The test images the model gets wrong with the most confidence, titled "true -> predicted (p)"."""
    probabilities = logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != labels.cpu()).flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:count]
    rows = max(1, -(-len(wrong) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.75), squeeze=False)
    for ax, i in zip(axes.flat, wrong.tolist() + [None] * (rows * columns - len(wrong))):
        if i is None:
            ax.axis("off")
            continue
        title = f"{classes[labels[i]]}\n-> {classes[predicted[i]]} ({confidence[i]:.2f})"
        _show(ax, images[i], title, color="crimson")
    fig.suptitle(f"{len(wrong)} most confident mistakes ({(predicted != labels.cpu()).sum().item()} in all)")
    fig.tight_layout()
    return fig


def confusion_matrix(labels, predicted, num_classes: int = 10):
    """counts[true, predicted] as an int64 tensor."""
    index = labels.cpu() * num_classes + predicted.cpu()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def confusion_figure(labels, logits, classes):
    """The confusion matrix with counts in each cell and each class's accuracy on the y axis."""
    counts = confusion_matrix(labels, logits.argmax(1), len(classes))
    per_class = 100 * counts.diag() / counts.sum(1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(counts, cmap="Blues")
    for (t, p), n in zip(torch.cartesian_prod(torch.arange(len(classes)), torch.arange(len(classes))).tolist(),
                         counts.flatten().tolist()):
        ax.text(p, t, n, ha="center", va="center", fontsize=7, color="white" if n > counts.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c} ({a:.1f}%)" for c, a in zip(classes, per_class.tolist())])
    ax.set(xlabel="predicted", ylabel="true (per-class accuracy)", title="confusion matrix, test set")
    fig.tight_layout()
    return fig
