"""The zoo's tables, worked example, checkerboard score and receptive-field growth (tiny, CPU)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from helpers.lecture.zoo import (
    LECTURE_INPUT,
    LECTURE_KERNEL,
    checkerboard_demo,
    checkerboard_figure,
    checkerboard_score,
    conv_table,
    count_macs,
    format_table,
    rf_growth,
    rf_growth_figure,
    shared_range,
    upsampler_reading,
    upsampler_table,
    worked_example,
)
from helpers.models import TutorialNet
from tests.conftest import png_kb


def test_linear_layers_count_their_multiply_adds_too():
    """The tutorial network's three linear layers: 400 x 120 + 120 x 84 + 84 x 10 beside its two convolutions."""
    convs = 6 * 28 * 28 * 3 * 5 * 5 + 16 * 10 * 10 * 6 * 5 * 5
    assert count_macs(TutorialNet(), (3, 32, 32)) == convs + 400 * 120 + 120 * 84 + 84 * 10


def test_conv_table_matches_the_lecture():
    rows = {row["block"]: row for row in conv_table()}
    assert [row["params"] for row in rows.values()] == [4608, 656, 1632, 1152, 4608]
    assert rows["normal 3x3"]["MACs"] == 32 * 32 * 32 * 16 * 9 == 4_718_592
    assert rows["depthwise-separable"]["MACs"] == 32 * 32 * (16 * 9 + 32 * 16) == 671_744
    assert rows["grouped (groups=4)"]["MACs"] == 4_718_592 // 4
    assert [row["RF"] for row in rows.values()] == [3, 3, 3, 3, 5]
    assert all(row["output"] == (32, 32, 32) for row in rows.values())


def test_upsampler_table():
    rows = {row["block"]: row for row in upsampler_table()}
    assert all(row["output"] == (32, 64, 64) for row in rows.values())
    assert rows["transposed conv"]["MACs"] == 16 * 32 * 32 * 32 * 9  # per input element, zeros not counted
    assert rows["pixel shuffle (ICNR)"]["MACs"] == rows["resize-conv"]["MACs"] == 128 * 32 * 32 * 16 * 9
    assert rows["pixel shuffle (ICNR)"]["params"] == 4 * rows["resize-conv"]["params"] == 4 * 4608
    assert all(row["input"] == (16, 32, 32) for row in rows.values())  # the figure's one-channel 16x16 is not this


def test_upsampler_reading_gives_each_flat_output_its_level_and_its_sign():
    results = checkerboard_demo(torch.ones(16, 16), seed=0)
    text = upsampler_reading(seed=0)
    for name in ("pixel shuffle (ICNR)", "resize-conv"):
        level = float(results[name][0][2:-2, 2:-2].mean())
        assert f"{name} {level:+.2f}" in text
        assert (f"{name} draws the bump dark" in text) == (level < 0), text
    assert "transposed conv -" not in text and "transposed conv +" not in text  # a checkerboard: no single level


def test_format_table_is_fixed_width():
    text = format_table([{"block": "normal", "params": 4608, "output": (32, 8, 8)},
                         {"block": "depthwise-separable", "params": 656, "output": (32, 8, 8)}])
    assert text.splitlines() == ["block                params  output",
                                 "-------------------  ------  ------",
                                 "normal                4,608  32x8x8",
                                 "depthwise-separable     656  32x8x8"]


def test_worked_example_is_cross_correlation_with_zero_padding():
    output = worked_example()
    assert output.tolist() == [[1, 6, 5, 6, 6], [7, 10, 9, 16, 9], [7, 10, 8, 12, 3], [9, 10, 12, 10, 6],
                               [3, 11, 10, 6, 4]]
    assert output[:3, :3].tolist() == [[1, 6, 5], [7, 10, 9], [7, 10, 8]]  # the lecture's numbers
    flipped = torch.tensor(LECTURE_KERNEL, dtype=torch.float32).flip(0, 1)[None, None]
    true_convolution = F.conv2d(torch.tensor(LECTURE_INPUT, dtype=torch.float32)[None, None], flipped, padding=1)
    assert true_convolution[0, 0, :3, :3].tolist() == [[4, 9, 4], [9, 9, 10], [9, 8, 10]]


def test_checkerboard_score_on_known_patterns():
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = (-1.0) ** (i + j)
    assert checkerboard_score(torch.ones(8, 8)) == 0
    assert checkerboard_score(checker) == 1
    assert abs(checkerboard_score(1 + checker) - 0.5) < 1e-12
    assert abs(checkerboard_score((-1.0) ** i) - 1) < 1e-12  # stripes repeat every 2 pixels too
    nearest = torch.randn(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert checkerboard_score(nearest) < 1e-12
    with pytest.raises(ValueError):  # an odd size has no Nyquist bin
        checkerboard_score(torch.ones(7, 8))


def test_only_the_transposed_conv_makes_a_checkerboard_of_a_constant_image():
    scores = {name: score for name, (_, score) in checkerboard_demo(torch.ones(16, 16)).items()}
    assert scores["pixel shuffle (ICNR)"] < 1e-12 and scores["resize-conv"] < 1e-12
    assert scores["transposed conv"] > 0.5


def test_receptive_field_grows_linearly_versus_exponentially():
    rows = rf_growth(4)
    assert [r["normal"] for r in rows] == [r["normal measured"] for r in rows] == [3, 5, 7, 9]
    assert [r["dilated"] for r in rows] == [r["dilated measured"] for r in rows] == [3, 7, 15, 31]


def test_figures_are_returned_not_shown():
    for figure, panels in ((checkerboard_figure(), 8 + 2), (rf_growth_figure(), 1)):  # 8 pictures, 2 colorbars
        assert isinstance(figure, Figure) and len(figure.axes) == panels


def test_checkerboard_rows_share_one_scale_and_the_constant_input_is_not_black():
    figure = checkerboard_figure()
    assert figure._suptitle is not None and "one grey scale per row" in figure._suptitle.get_text()
    pictures = [ax for ax in figure.axes if ax.get_images()]
    assert len(pictures) == 8 and all(ax.get_title() for ax in pictures)
    for row in (pictures[:4], pictures[4:]):
        images = [ax.get_images()[0] for ax in row]
        arrays = [np.asarray(image.get_array()) for image in images]
        clim = (min(a.min() for a in arrays), max(a.max() for a in arrays))
        assert all(image.get_clim() == pytest.approx(clim) for image in images)
        assert len({id(image.norm) for image in images}) == 4  # each its own norm object, equal limits
    constant = pictures[0].get_images()[0]
    shown = constant.norm(np.asarray(constant.get_array()))
    assert np.ptp(shown) == 0 and 0 < shown.flat[0] <= 1  # was 0 (black) when each panel autoscaled
    colorbars = [ax for ax in figure.axes if not ax.get_images() and ax.get_ylabel().startswith("value")]
    assert len(colorbars) == 2


def test_shared_range_of_an_all_constant_row_shows_it_mid_grey():
    vmin, vmax = shared_range([torch.ones(4, 4), torch.ones(2, 2)])
    assert (1 - vmin) / (vmax - vmin) == 0.5
    assert shared_range([torch.zeros(2, 2), torch.tensor([[-1.0, 3.0]])]) == (-1.0, 3.0)


def test_checkerboard_figure_png_is_small():
    assert png_kb(checkerboard_figure()) < 100


def test_rf_growth_figure_ticks_are_integers():
    ax = rf_growth_figure(6).axes[0]
    ax.figure.canvas.draw()
    for ticks, (low, high) in ((ax.get_xticks(), ax.get_xlim()), (ax.get_yticks(), ax.get_ylim())):
        shown = [t for t in ticks if low <= t <= high]
        assert 2 <= len(shown) <= 11 and all(float(t).is_integer() for t in shown)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
