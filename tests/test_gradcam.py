"""Grad-CAM on toy networks whose evidence lies where we put it, and the mistakes figure (CPU)."""

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from helpers.checkpoints import load_model, weights_path
from helpers.evaluation import predict
from helpers.lecture.gradcam import MistakeMaps, evidence_summary, grad_cam, gradcam_mistakes_figure, mistake_maps
from helpers.lecture.plots import misclassified_gallery
from helpers.models import S7AirNet
from helpers.notebook import jpeg_bytes
from tests.conftest import TINY_AIR

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class KeepTopRight(nn.Module):
    """Zeroes a map outside its top-right quadrant."""

    def forward(self, x):
        mask = torch.zeros(x.shape[-2:])
        mask[:x.shape[-2] // 2, x.shape[-1] // 2:] = 1
        return x * mask


def top_right_net() -> nn.Module:
    """Convolutions, a 4x max-pool (32 -> 8 px), and a head that reads only the top-right quadrant of that map.

    Grad-CAM weights the probed layer's channels, not its positions, so the quadrant is cut inside the probed
    layer ("features"): its output is the map the head reads."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.MaxPool2d(4), KeepTopRight())
    net.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        net.head[2].weight[0].abs_()  # class 0: every channel is evidence for it
        net.head[2].weight[1] = -net.head[2].weight[0]  # class 1: every channel is evidence against it
    return net


def test_the_map_of_a_top_right_head_lies_in_the_top_right_quadrant():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = grad_cam(top_right_net(), images, [0, 0, 0, 0], layer="features")
    assert maps.shape == (4, 32, 32)
    for heat in maps:
        row, column = divmod(int(heat.argmax()), 32)
        assert row < 16 and column >= 16 and heat.max() == 1
    # bilinear upsampling by 4 blurs the quadrant's edge by 2 px; beyond that nothing
    assert (maps[:, 18:, :] == 0).all() and (maps[:, :, :14] == 0).all()


def test_evidence_against_a_class_gives_an_empty_map_not_nan():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (grad_cam(top_right_net(), images, [1, 1], layer="features") == 0).all()


def colour_net() -> nn.Module:
    """A 1x1 conv whose channel 0 sees red and channel 1 blue, then average pooling: class 0 is red, class 1 blue."""
    net = nn.Sequential()
    net.features = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU())
    net.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net.features[0].weight.copy_(torch.tensor([[1.0, -1, -1], [-1, -1, 1]])[:, :, None, None])
        net.head[2].weight.copy_(torch.eye(2))
    return net


def test_the_map_follows_the_class_asked_for():
    image = torch.zeros(3, 32, 32)
    image[0, 2:10, 20:28] = 1  # a red square at the top right
    image[2, 20:28, 2:10] = 1  # a blue one at the bottom left
    net = colour_net()
    red, blue = grad_cam(net, torch.stack([image, image]), [0, 1], layer=net.features)
    assert divmod(int(red.argmax()), 32) in {(r, c) for r in range(2, 10) for c in range(20, 28)}
    assert divmod(int(blue.argmax()), 32) in {(r, c) for r in range(20, 28) for c in range(2, 10)}
    assert (red[20:28, 2:10] == 0).all() and (blue[2:10, 20:28] == 0).all()
    assert torch.equal(red, grad_cam(net, image[None], [0], layer="features")[0])  # a module or its name


def test_a_layer_from_another_model_is_refused():
    with pytest.raises(ValueError, match="not a module"):
        grad_cam(colour_net(), torch.zeros(1, 3, 8, 8), [0], layer=nn.ReLU())


def test_s7airnet_maps_at_c3_are_image_sized_and_scaled_to_1():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    maps = grad_cam(S7AirNet(TINY_AIR), images, [0, 1, 2, 3])
    assert maps.shape == (4, 32, 32) and maps.min() >= 0
    assert all(heat.max() in (0, 1) for heat in maps)


def made_up_mistakes(n: int = 50):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10, torch.randn(n, 10, generator=generator)


def test_mistake_maps_explain_the_gallery_s_mistakes_at_c3():
    images, labels, logits = made_up_mistakes()
    torch.manual_seed(0)
    model = S7AirNet(TINY_AIR)
    found = mistake_maps(model, images, labels, logits, count=4)
    confidence, predicted = logits.softmax(1).max(1)
    first = int(torch.where(predicted != labels, confidence, 0).argmax())
    assert found.indices[0] == first and len(found.indices) == 4
    assert found.layer == "c3" and found.size == (7, 7)  # S7AirNet: 32 -> 31 -> 15 -> 7
    assert found.chosen.shape == found.true.shape == (4, 32, 32)
    alone = grad_cam(model, images[first:first + 1].repeat(2, 1, 1, 1), [predicted[first], labels[first]], "c3")
    assert torch.allclose(found.chosen[0], alone[0], atol=1e-5) and torch.allclose(found.true[0], alone[1], atol=1e-5)


def maps_of(chosen, true) -> MistakeMaps:
    n = len(chosen)
    return MistakeMaps(torch.arange(n), None, None, None, torch.stack(chosen), torch.stack(true), "c3", (8, 8))


def test_evidence_summary_by_hand():
    middle, corner, empty = torch.zeros(8, 8), torch.zeros(8, 8), torch.zeros(8, 8)
    middle[2:6, 2:6] = 1  # all of it in the middle quarter
    corner[0:4, 0:4] = 1  # a quarter of it there (rows and columns 2-3)
    summary = evidence_summary(maps_of([middle, middle, corner], [corner, empty, corner]))
    assert summary["shown"] == 3 and summary["both"] == 2
    assert summary["with evidence, chosen"] == 3 and summary["with evidence, true"] == 2
    assert summary["centre, chosen"] == pytest.approx(100 * (1 + 1 + 0.25) / 3)
    assert summary["centre, true"] == pytest.approx(25)
    # middle and corner overlap on rows and columns 2-3: 4 of their 16 pixels; corner and corner: all
    assert summary["shared"] == pytest.approx(100 * (4 / 16 + 1) / 2)


def test_evidence_summary_without_any_evidence_says_none_not_nan():
    empty = torch.zeros(8, 8)
    summary = evidence_summary(maps_of([empty], [empty]))
    assert summary["both"] == 0 and summary["centre, chosen"] is None and summary["shared"] is None


def test_mistakes_figure_shows_the_gallery_s_mistakes_with_both_maps():
    images, labels, logits = made_up_mistakes()
    torch.manual_seed(0)
    found = mistake_maps(S7AirNet(TINY_AIR), images, labels, logits, count=4)
    fig = gradcam_mistakes_figure(found, labels, CLASSES)
    assert isinstance(fig, Figure) and "4 most confident mistakes" in fig._suptitle.get_text()
    assert "c3 (7x7 map" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    gallery = misclassified_gallery(images, labels, logits, CLASSES, count=4)
    assert [t.split("\n")[0] for t in titles[::3]] == [ax.get_title().replace("\n", " ").split(" (")[0]
                                                        for ax in gallery.axes if ax.get_images()]
    first = int(found.indices[0])
    assert titles[1].startswith(f"for {CLASSES[found.predicted[first]]}\n(chosen)")
    assert titles[2].startswith(f"for {CLASSES[labels[first]]}\n(true)")
    empty = [t for t, heat in zip(titles[1::3] + titles[2::3], list(found.chosen) + list(found.true))
             if not heat.any()]
    assert all(t.endswith("no evidence") for t in empty)
    assert "Grad-CAM" in fig.axes[-1].get_ylabel()


def test_mistakes_figure_of_the_committed_model_is_small(real_data):
    model = load_model(weights_path("fast", 0))
    images, labels = real_data.test_images[:300], real_data.test_labels[:300]
    found = mistake_maps(model, images, labels, predict(model, images), count=4)
    figure = gradcam_mistakes_figure(found, labels, real_data.classes)
    assert len(jpeg_bytes(figure)) < 60_000  # as the notebook shows it
