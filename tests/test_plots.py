"""The notebook's figures: what they show, their titles and ticks, and that their PNGs stay small (Agg, CPU)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.lecture.plots import confusion_figure, misclassified_gallery, mosaic, overlay, sample_grid, training_curves  # noqa: E402
from helpers.notebook import jpeg_bytes, png_bytes  # noqa: E402
from tests.conftest import png_kb  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 (3, 32, 32) images of random sinusoidal gradients: compress like photos more than noise does."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    phase_x, phase_y, freq_y = (torch.rand(n, 3, 1, 1, generator=g) * 6 for _ in range(3))
    freq_x = torch.rand(n, 1, 1, 1, generator=g) * 6
    images = 0.5 + 0.25 * torch.sin(freq_x * x + phase_x) + 0.25 * torch.cos(freq_y * y + phase_y)
    return (images.clamp(0, 1) * 255).to(torch.uint8)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_mosaic_places_tiles_with_white_gaps():
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 7, np.uint8)
    grid = mosaic([[a, b], [None, a]], gap=1)
    assert grid.shape == (5, 5, 3)
    assert (grid[:2, :2] == 0).all() and (grid[:2, 3:] == 7).all() and (grid[3:, 3:] == 0).all()
    assert (grid[3:, :2] == 255).all() and (grid[2] == 255).all() and (grid[:, 2] == 255).all()


def test_sample_grid_is_one_image_with_the_classes_as_y_ticks():
    images, labels = smooth_images(100), torch.arange(100) % 10
    fig = sample_grid(images, labels, CLASSES, per_class=6)
    (ax,) = fig.axes
    (shown,) = ax.get_images()
    assert shown.get_array().shape == (10 * 34 - 2, 6 * 34 - 2, 3)  # 10 rows x 6 images of 32 px, 2 px gaps
    grid = np.asarray(shown.get_array())
    assert (grid[34:66, 68:100] == images[21].permute(1, 2, 0).numpy()).all()  # row "automobile", 3rd image
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(1, 7)]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_sample_grid_takes_float_images_and_leaves_missing_ones_blank():
    images, labels = smooth_images(30), torch.arange(30) % 10  # 3 per class, 8 asked for
    as_uint8 = np.asarray(sample_grid(images, labels, CLASSES, per_class=8).axes[0].get_images()[0].get_array())
    as_float = np.asarray(sample_grid(images.float() / 255, labels, CLASSES, per_class=8)
                          .axes[0].get_images()[0].get_array())
    assert as_uint8.shape == (338, 8 * 34 - 2, 3) and (as_uint8 == as_float).all()
    assert (as_uint8[:, 3 * 34:] == 255).all()


def test_sample_grid_is_small_as_the_notebook_stores_it(real_data):
    fig = sample_grid(real_data.train_images, real_data.train_labels, real_data.classes)
    assert len(fig.axes[0].get_xticklabels()) == 4  # four images per class by default
    assert len(jpeg_bytes(fig)) < 60_000  # at 100 dpi; its PNG is about 130 KB at the notebook's 80


def history(epochs: int, tested: bool):
    return [{"epoch": e, "loss": 2 / e, "train_acc": 50 + e, "test_acc": 60 + e if tested else None}
            for e in range(1, epochs + 1)]


def integer_ticks_in_view(ax) -> list:
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


def test_training_curves_thirty_epochs_have_few_integer_ticks():
    fig = training_curves(history(30, tested=True), "title")
    for ax in fig.axes:
        ticks = integer_ticks_in_view(ax)
        assert 2 <= len(ticks) <= 11 and all(float(t).is_integer() for t in ticks)
        assert ax.get_title() and ax.get_xlabel() == "epoch" and ax.get_ylabel()
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["train (augmented)",
                                                                           "test, plain (end of epoch)"]
    assert fig._suptitle.get_text() == "title"


def test_training_curves_without_test_accuracy_show_the_train_accuracy_only():
    fig = training_curves(history(30, tested=False))
    acc_ax = fig.axes[1]
    assert len(acc_ax.get_lines()) == 1
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["train (augmented)"]
    assert list(acc_ax.get_lines()[0].get_ydata()) == [50 + e for e in range(1, 31)]


def test_training_curves_of_one_epoch_have_fractional_ticks_not_a_single_one():
    ax = training_curves(history(1, tested=True)).axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert len(ticks) >= 3 and not all(float(t).is_integer() for t in ticks)


def test_a_history_with_steps_draws_each_step_averaged_over_a_twentieth_of_an_epoch():
    steps = 40  # per epoch: running means of 2 steps
    one_epoch = [{"epoch": 1, "loss": 1.0, "train_acc": 50.0, "test_acc": 70.0,
                  "step_loss": [2 - i / steps for i in range(steps)], "step_acc": [float(i) for i in range(steps)]}]
    fig = training_curves(one_epoch)
    loss_line, = fig.axes[0].get_lines()
    assert len(loss_line.get_xdata()) == steps - 1 and loss_line.get_xdata()[-1] == 1.0  # meets the test point
    assert loss_line.get_ydata()[0] == (2 + 2 - 1 / steps) / 2
    train, test = fig.axes[1].get_lines()
    assert list(train.get_ydata()[:2]) == [0.5, 1.5] and list(test.get_xdata()) == [1]
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["train (augmented), mean of 2 steps",
                                                                           "test, plain (end of epoch)"]
    assert fig.axes[0].get_xlabel() == "epoch (40 steps each)"
    two_epochs = one_epoch + [{**one_epoch[0], "epoch": 2}]
    x = training_curves(two_epochs).axes[0].get_lines()[0].get_xdata()
    assert len(x) == 2 * steps - 1 and x[steps - 2] == 1.0 and x[-1] == 2.0  # the window runs across epochs
    # A fractional last epoch (1.5 epochs) ends half-way, and so does its test point.
    half = [{**one_epoch[0], "epoch": 2, "step_loss": one_epoch[0]["step_loss"][:20],
             "step_acc": one_epoch[0]["step_acc"][:20]}]
    fig = training_curves(one_epoch + half)
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == 1.5
    assert list(fig.axes[1].get_lines()[1].get_xdata()) == [1, 1.5]


def test_misclassified_gallery_titles_and_size():
    images, labels = smooth_images(200), torch.arange(200) % 10
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0))
    fig = misclassified_gallery(images, labels, logits, CLASSES, count=12, which="plain")
    wrong = int((logits.argmax(1) != labels).sum())
    assert fig._suptitle.get_text() == f"The 12 most confident mistakes (plain), of {wrong:,} in all"
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 12 and all("->" in ax.get_title() for ax in panels)
    assert len(jpeg_bytes(fig)) < 60_000


def test_overlay_draws_the_picture_then_the_heat_as_opaque_as_it_is_hot():
    fig, ax = plt.subplots()
    image, heat = smooth_images(1)[0], torch.linspace(0, 1, 32 * 32).reshape(32, 32)
    artist = overlay(ax, image, heat)
    picture, shown = ax.get_images()
    assert shown is artist and (picture.get_array() == image.permute(1, 2, 0).numpy()).all()
    assert shown.get_alpha()[0, 0] == 0 and shown.get_alpha()[-1, -1] == pytest.approx(0.7)
    assert shown.get_clim() == (0, 1) and shown.get_interpolation() == "nearest"
    assert overlay(ax, image, heat, smooth=True).get_interpolation() == "bilinear"  # a map from a coarse layer


def test_confusion_figure_is_titled_and_labelled():
    labels = torch.arange(100) % 10
    fig = confusion_figure(labels, torch.nn.functional.one_hot(labels, 10).float(), CLASSES, which="plain")
    (ax,) = fig.axes
    assert ax.get_title() == "Confusion matrix, test set, plain predictions"
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert ax.get_yticklabels()[0].get_text() == "airplane (100.0%)"
    assert png_kb(fig) < 100
    small = png_bytes(fig)  # as the notebook shows it: 64 colours
    assert small.startswith(b"\x89PNG") and len(small) < png_kb(fig) * 1024 / 2
