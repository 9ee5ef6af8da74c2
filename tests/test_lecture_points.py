"""The lecture's points the notebook computes: each number against a hand count or against torch itself."""
import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.lecture.lecture_points import (  # noqa: E402
    dilated_taps,
    dilation_figure,
    grids_text,
    interior_counts,
    overlap_counts,
    overlap_figure,
    pointwise_demo,
    pointwise_text,
    separable_costs,
    transposed_output_size,
    transposed_size_table,
    worked_example_text,
)
from helpers.models import S7AirNet, S7Net  # noqa: E402


def test_separable_costs_of_s7net_by_hand():
    rows = separable_costs(S7Net())
    assert [(r["layer"], r["C_in"], r["C_out"], r["k"]) for r in rows] == [("c2.1.0", 64, 64, 3),
                                                                          ("c3.1.0", 128, 128, 3)]
    first = rows[0]
    assert first["k²·C_in + C_in·C_out"] == 9 * 64 + 64 * 64 == first["counted"]  # the module holds exactly these
    assert first["k²·C_in·C_out"] == 9 * 64 * 64
    assert first["ratio"] == first["1/C_out + 1/k²"] == f"{1 / 64 + 1 / 9:.4f}"


def test_separable_costs_count_the_module_s_own_weights_whatever_the_widths():
    rows = separable_costs(S7AirNet(widths=(8, 16, 24, 40)))
    assert [(r["C_in"], r["C_out"]) for r in rows] == [(16, 24), (24, 40)]
    assert all(r["k²·C_in + C_in·C_out"] == r["counted"] for r in rows)
    assert all(r["ratio"] == f"{1 / r['C_out'] + 1 / 9:.4f}" for r in rows)  # C_in cancels


def test_the_worked_example_prints_input_kernel_and_the_lecture_s_output():
    lines = worked_example_text().splitlines()
    assert lines[0].split() == ["input", "(5x5)", "kernel", "(3x3)", "output", "(padding", "1,", "stride", "1)"]
    assert lines[1].split() == ["2", "2", "3", "3", "3", "2", "0", "1", "1", "6", "5", "6", "6"]
    assert [line.split()[-5:-2] for line in lines[1:4]] == [["1", "6", "5"], ["7", "10", "9"], ["7", "10", "8"]]
    assert len(lines) == 6  # the kernel's column is padded under its three rows


def test_grids_text_pads_shorter_grids():
    assert grids_text({"a": [[1]], "bb": [[1, 2], [3, 4]]}).splitlines() == ["a      bb", "  1      1   2",
                                                                              "         3   4"]


@pytest.mark.parametrize("kernel, stride, inside", [(3, 2, [1, 2, 4]), (4, 2, [4]), (3, 1, [9]), (5, 2, [4, 6, 9]),
                                                    (6, 3, [4])])
def test_only_a_kernel_the_stride_divides_overlaps_evenly(kernel, stride, inside):
    assert interior_counts(kernel, stride) == inside
    assert (len(inside) == 1) == (kernel % stride == 0)


def test_overlap_counts_sum_to_every_tap_of_every_input_pixel():
    counts = overlap_counts(3, 2, size=4)
    assert counts.shape == (9, 9) and counts.sum() == 16 * 9
    assert counts[0].tolist() == [1, 1, 2, 1, 2, 1, 2, 1, 1]


def test_overlap_figure_titles_say_which_kernel_the_stride_divides():
    titles = [ax.get_title() for ax in overlap_figure().axes]
    assert titles[0].startswith("kernel 3, stride 2: 2 does not divide 3") and "1, 2, 4" in titles[0]
    assert titles[1].startswith("kernel 4, stride 2: 2 divides 4") and "inside: 4 contributions" in titles[1]


def test_dilated_taps_are_d_apart_in_a_window_of_d_k_minus_1_plus_1():
    taps = dilated_taps(2)
    assert taps.shape == (5, 5) and taps.sum() == 9
    assert taps[::2, ::2].all() and not taps[1::2].any() and not taps[:, 1::2].any()
    assert dilated_taps(1).all() and dilated_taps(3, kernel=5).shape == (13, 13)
    assert [ax.get_title().splitlines()[1] for ax in dilation_figure().axes] == [
        "over a 3x3 window", "over a 5x5 window", "over a 7x7 window"]


def test_the_1x1_conv_is_the_weight_matrix_at_every_pixel():
    demo = pointwise_demo()
    assert demo["conv"].shape == (2, 2, 2) and torch.equal(demo["conv"], demo["per_pixel"])
    manual = torch.einsum("oc,chw->ohw", demo["weight"], demo["image"])
    assert torch.equal(demo["conv"], manual)
    text = pointwise_text(demo)
    assert text.endswith("at every pixel: True") and len(text.splitlines()) == 6


def test_transposed_output_size_formula_matches_torch():
    assert transposed_output_size(4, 3, 2, 1, 1) == 8  # the x2 upsampler of helpers.convs
    assert transposed_output_size(5, 3, 2, dilation=2) == 13
    assert all(row["formula"] == row["torch"] for row in transposed_size_table())
    assert transposed_size_table([(5, 3, 2, 0, 0)]) == [{"n_in": 5, "k": 3, "s": 2, "p": 0, "output_padding": 0,
                                                         "formula": 11, "torch": 11}]
