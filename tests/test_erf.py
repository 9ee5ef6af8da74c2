"""The effective receptive field against fields computed by hand, the gridding holes against their formula, the
theoretical squares against the gradient ground truth, and the figures (tiny models, CPU)."""
import copy
import itertools

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from helpers.checker.positive_paths import positive_paths
from helpers.checker.receptive_field import final_rf, rf_table
from helpers.checkpoints import load_model, weights_path
from helpers.lecture.erf import (
    BLOCKS,
    effective_rf,
    erf_square_sides,
    erf_table,
    image_mosaic,
    measured_holes,
    noise_images,
    path_counts,
    rf_squares,
)
from helpers.lecture.erf_figures import erf_figure, gridding_figure
from helpers.lecture.gradcam import grad_cam
from helpers.models import S7AirNet
from tests.conftest import TINY_AIR, png_kb


def tiny_airnet(seed: int = 0) -> S7AirNet:
    torch.manual_seed(seed)
    return S7AirNet(TINY_AIR)


def test_one_all_ones_3x3_conv_has_a_uniform_3x3_field():
    conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    erf = effective_rf(conv, "", noise_images(4, size=9))
    assert erf.shape == (9, 9)
    assert torch.allclose(erf[3:6, 3:6], torch.full((3, 3), 1 / 9))
    outside = erf.clone()
    outside[3:6, 3:6] = 0
    assert (outside == 0).all()


def test_negative_weights_count_as_much_as_positive_ones():
    conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0, 0] = torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]])  # signed taps
        conv.weight[0, 1] = 1  # summed over channels, signed gradients would cancel on four taps
    erf = effective_rf(conv, "", torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(erf[1:4, 1:4], torch.full((3, 3), 1 / 9))


def test_uint8_and_float_images_give_the_same_field():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    model = tiny_airnet()
    assert torch.allclose(effective_rf(model, "c2", images), effective_rf(model, "c2", images.float() / 255))


def test_a_mosaic_tiles_the_images_row_by_row():
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 3, 2, 2)
    mosaic = image_mosaic(images, 2, 4)
    assert mosaic.shape == (2, 3, 4, 4) and mosaic.dtype == torch.float32
    assert torch.equal(mosaic[1, 0] * 255, torch.tensor([[4., 4, 5, 5], [4, 4, 5, 5], [6, 6, 7, 7], [6, 6, 7, 7]]))
    with pytest.raises(ValueError, match="3 mosaics of 4 px need 12 images"):
        image_mosaic(images, 3, 4)


def test_noise_images_are_uniform_in_0_1_and_reproducible():
    images = noise_images(8, size=16, seed=3)
    assert images.shape == (8, 3, 16, 16) and 0 <= images.min() and images.max() < 1
    assert abs(images.mean().item() - 0.5) < 0.02
    assert torch.equal(images, noise_images(8, size=16, seed=3)) and not torch.equal(images, noise_images(8, 16, 4))


def test_a_probe_that_is_not_a_feature_map_is_refused():
    with pytest.raises(ValueError, match="not a map"):
        effective_rf(tiny_airnet(), "", noise_images(2))  # the whole model ends in logits


def predicted_holes(dilations) -> torch.Tensor:
    """The holes by formula: a (RF, RF) mask, True where the row or the column offset is not reachable, an offset
    being reachable when it is a sum of +-d or 0 per layer. A 3x3 kernel's taps are every row tap with every column
    tap, so the two axes are independent: for (2, 2, 2) every reachable offset is even, and for (1, 2, 4) every
    offset from -7 to 7 is reachable."""
    radius = sum(dilations)
    reachable = {sum(sign * d for sign, d in zip(signs, dilations))
                 for signs in itertools.product((-1, 0, 1), repeat=len(dilations))}
    reached = torch.tensor([offset in reachable for offset in range(-radius, radius + 1)])
    return ~(reached[:, None] & reached[None, :])


@pytest.mark.parametrize("dilations", [(1, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_measured_holes_are_the_predicted_ones(dilations):
    side = 1 + 2 * sum(dilations)
    assert measured_holes(dilations).shape == predicted_holes(dilations).shape == (side, side)
    assert torch.equal(measured_holes(dilations), predicted_holes(dilations))


def test_repeating_dilation_2_leaves_every_odd_row_and_column_unreached():
    offsets = torch.arange(-6, 7)
    odd = offsets % 2 == 1
    by_hand = odd[:, None] | odd[None, :]
    assert torch.equal(predicted_holes((2, 2, 2)), by_hand)
    assert torch.equal(measured_holes((2, 2, 2)), by_hand)
    assert int(by_hand.sum()) == 13 * 13 - 7 * 7 == 120
    assert not measured_holes((1, 2, 4)).any() and not measured_holes((1, 1, 1)).any()


def test_path_counts():
    normal = path_counts((1, 1, 1))
    one_axis = torch.tensor([1.0, 3, 6, 7, 6, 3, 1])  # ways to walk 3 steps of -1, 0 or +1: (1 + x + x^2)^3
    assert torch.equal(normal, torch.outer(one_axis, one_axis))
    assert normal.sum() == 9 ** 3  # every path from the centre output ends on some pixel
    dilated = path_counts((2, 2, 2))
    assert torch.equal(dilated[::2, ::2], normal)  # the same paths, every step twice as long
    assert path_counts((1, 2, 4)).min() >= 1 and path_counts((1, 2, 4)).sum() == 9 ** 3


def test_theoretical_squares_of_s7airnet_by_hand():
    model = tiny_airnet()
    squares = rf_squares(model, BLOCKS)
    # whitening 2x2, conv 3x3: 4; pool 2: 5, dilated 3x3 at jump 2: 13, 3x3: 17; pool: 19, two 3x3 at jump 4: 35;
    # pool: 39, depthwise 3x3 at jump 8: 55, the network's final field
    assert [squares[b].side for b in BLOCKS] == [4, 17, 35, 55] and final_rf(rf_table(model)) == 55
    # centre unit of maps 31, 15, 7, 3 wide: position 15, 7, 3, 1, whose first position sits at 0.5, 1, 2, 4
    assert [squares[b].centre for b in BLOCKS] == [15.5, 15.0, 14.0, 12.0]


def test_theoretical_squares_are_where_the_gradient_reaches():
    """With every path positive (helpers.checker.positive_paths) the input gradient is non-zero exactly on the
    theoretical field: its extent must be the square the formulas place."""
    model = tiny_airnet()
    squares = rf_squares(model, BLOCKS, (3, 64, 64))
    for block in BLOCKS:
        with positive_paths():
            reached = effective_rf(model, block, torch.ones(1, 3, 64, 64)) > 0
        side, centre = squares[block]
        for axis in (reached.any(1), reached.any(0)):
            hits = axis.nonzero().flatten()
            assert (hits[0].item(), hits[-1].item()) == (centre - (side - 1) / 2, centre + (side - 1) / 2), block
            assert len(hits) == side


@pytest.mark.parametrize("erf, centre, sides", [
    (torch.zeros(11, 11).index_put_((torch.tensor(5), torch.tensor(5)), torch.tensor(1.0)), None, (1, 1)),
    (torch.nn.functional.pad(torch.ones(7, 7), (2, 2, 2, 2)), None, (5, 7)),  # side 3: 9/49 of it, side 5: 25/49
    (torch.nn.functional.pad(torch.ones(4, 4), (2, 2, 2, 2)), None, (4, 4)),  # centre 3.5: sides 2, 4, ...
    (torch.zeros(11, 11).index_put_((torch.tensor(2), torch.tensor(2)), torch.tensor(1.0)), 5.0, (7, 7)),
])
def test_square_sides_by_hand(erf, centre, sides):
    assert erf_square_sides(erf, centre) == sides


def test_a_square_holding_exactly_the_fraction_is_enough():
    erf = torch.full((3, 3), 0.5 / 8)
    erf[1, 1] = 0.5
    assert erf_square_sides(erf) == (1, 3)


def test_square_sides_of_a_peak_and_a_ring():
    erf = torch.zeros(9, 9)
    erf[2:7, 2:7] = 0.4 / 16  # the ring at distance 2 holds 16 pixels
    erf[3:6, 3:6] = 0
    erf[4, 4] = 0.6
    assert erf_square_sides(erf) == (1, 5)
    assert erf_square_sides(erf, fractions=(0.6, 0.61)) == (1, 5)


def test_erf_table_sets_each_model_s_effective_field_against_the_theoretical_one():
    images = noise_images(4, size=64)
    table = erf_table({"untrained": tiny_airnet(0), "trained": tiny_airnet(1)}, images)
    assert [row["block"] for row in table] == list(BLOCKS)
    assert [row["theoretical RF"] for row in table] == [4, 17, 35, 55]
    assert list(table[0]) == ["block", "theoretical RF", "50% in (untrained)", "95% in (untrained)",
                              "50% in (trained)", "95% in (trained)"]
    for row in table:  # the field is zero outside its square, so 95% of it is always inside
        for label in ("untrained", "trained"):
            assert 1 <= row[f"50% in ({label})"] <= row[f"95% in ({label})"] <= row["theoretical RF"]
    alone = erf_table({"trained": tiny_airnet(1)}, images)  # each model's columns are its own
    assert [r["50% in (trained)"] for r in alone] == [r["50% in (trained)"] for r in table]


@pytest.mark.parametrize("probe", [lambda model: effective_rf(model, "c3", noise_images(2)),
                                   lambda model: grad_cam(model, noise_images(2), [1, 2])],
                         ids=["effective_rf", "grad_cam"])
def test_probing_leaves_the_model_untouched_and_runs_in_eval_mode(probe):
    model = tiny_airnet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen  # S7AirNet freezes its whitening filters and BatchNorm scales
    result = probe(model)
    assert torch.equal(result, probe(copy.deepcopy(model).eval()))  # BatchNorm with its running statistics
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert all(module.training for module in model.modules())
    assert {name for name, p in model.named_parameters() if not p.requires_grad} == frozen
    assert all(p.grad is None for p in model.parameters())


def test_erf_figure_draws_each_block_untrained_and_trained_cropped_to_its_square():
    fig = erf_figure(tiny_airnet(0), tiny_airnet(1), noise_images(4))
    assert isinstance(fig, Figure) and "4 noise images of 32x32" in fig._suptitle.get_text()
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 8 and all(ax.get_title().startswith(b + ": RF") for ax, b in zip(panels, BLOCKS * 2))
    assert [ax.get_ylabel() for ax in panels[::4]] == ["untrained", "trained"]
    assert all(len(ax.patches) == 1 for ax in panels)
    # c1's 4 px square centred at 15.5, with a margin of 2 px each side; c4's 55 px one at 12 reaches past the 32 px
    # image: the view holds the whole square, and its margin stops at the image's edge
    assert panels[0].get_xlim() == (11.5, 19.5) and panels[0].get_ylim() == (19.5, 11.5)
    assert panels[3].get_xlim() == (12 - 27.5 - 0.5, 12 + 27.5 + 0.5)
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["-4", "-2", "0", "2", "4"]  # pixels from the centre
    assert panels[0].get_xticks()[2] == 15.5 and "ticks: pixels from the unit's centre" in fig._suptitle.get_text()
    colour_bars = [ax for ax in fig.axes if ax not in panels]
    assert len(colour_bars) == 1 and "gradient" in colour_bars[0].get_ylabel()


def test_gridding_figure_titles_count_the_holes():
    fig = gridding_figure()
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title().splitlines()[-1] for ax in panels] == ["0 holes in the RF", "120 holes in the RF",
                                                                  "0 holes in the RF"]
    assert all(ax.get_xlabel() for ax in panels) and panels[0].get_ylabel()
    assert "paths" in fig.axes[-1].get_ylabel()
    assert png_kb(fig) < 60


def test_erf_figure_of_the_committed_model_is_small():
    trained = load_model(weights_path("fast", 0))
    untrained = S7AirNet(**trained.model_kwargs)
    assert png_kb(erf_figure(untrained, trained, noise_images(8, size=64))) < 100
