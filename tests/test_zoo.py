"""The zoo's tables, worked example, checkerboard score and receptive-field growth (tiny, CPU)."""
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from helpers.zoo import (LECTURE_INPUT, LECTURE_KERNEL, checkerboard_demo, checkerboard_figure, checkerboard_score,
                         conv_table, format_table, rf_growth, rf_growth_figure, upsampler_table, worked_example)


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
    for figure, panels in ((checkerboard_figure(), 8), (rf_growth_figure(), 1)):
        assert isinstance(figure, Figure) and len(figure.axes) == panels
