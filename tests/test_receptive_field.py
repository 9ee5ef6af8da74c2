"""Receptive-field tables against hand-computed values, and the formulas against the gradient ground truth, which
empirical_rf measures on an input it grows until the gradient stays off the border."""
import pytest
import torch
from torch import nn

from helpers.checker.receptive_field import empirical_rf, final_rf, format_rf_table, rf_table
from helpers.checker.spec import check_s7
from helpers.convs import DepthwiseSeparableConv2d
from helpers.models import S7Net, count_parameters
from tests import student_nets as nets


def conv(kernel=3, stride=1, padding=0, dilation=1):
    return nn.Conv2d(2, 2, kernel, stride, padding, dilation)


# (net on a 2 x 32 x 32 input, hand-computed (n_out, j_out, r_out) per spatial layer)
CHAINS = {
    "3x3 stack": (lambda: nn.Sequential(conv(padding=1), nn.ReLU(), conv(padding=1), conv(padding=1)),
                  [(32, 1, 3), (32, 1, 5), (32, 1, 7)]),
    "max-pools": (lambda: nn.Sequential(conv(padding=1), nn.MaxPool2d((2, 2)), conv(padding=1), nn.MaxPool2d(2),
                                        conv(padding=1)),
                  [(32, 1, 3), (16, 2, 4), (16, 2, 8), (8, 4, 10), (8, 4, 18)]),
    "stride-2 conv": (lambda: nn.Sequential(conv(stride=2, padding=1), conv(padding=1), conv(stride=2)),
                      [(16, 2, 3), (16, 2, 7), (7, 4, 11)]),
    "dilated conv": (lambda: nn.Sequential(conv(padding=2, dilation=2), conv(dilation=2), conv(dilation=3)),
                     [(32, 1, 5), (28, 1, 9), (22, 1, 15)]),
    "kernel 5": (lambda: nn.Sequential(conv(5, padding=2), nn.MaxPool2d(3, 2, padding=1), conv(5, padding="same")),
                 [(32, 1, 5), (16, 2, 7), (16, 2, 15)]),
    "1x1": (lambda: nn.Sequential(conv(padding=1), conv(1), nn.AvgPool2d(2), nn.BatchNorm2d(2), conv(1)),
            [(32, 1, 3), (32, 1, 3), (16, 2, 4), (16, 2, 4)]),
}


@pytest.mark.parametrize("chain", CHAINS)
def test_table_matches_hand_computed_values(chain):
    build, expected = CHAINS[chain]
    rows = rf_table(build(), (2, 32, 32))
    assert [(row["n_out"], row["j_out"], row["r_out"]) for row in rows] == expected
    assert [row["j_in"] for row in rows] == [1] + [j for _, j, _ in expected[:-1]]
    assert not any(row["approximate"] or row["global_pool"] for row in rows)
    assert final_rf(rows) == expected[-1][2]


@pytest.mark.parametrize("chain", CHAINS)
def test_analytic_equals_empirical(chain):
    model = CHAINS[chain][0]()
    assert empirical_rf(model, (2, 32, 32)) == final_rf(rf_table(model, (2, 32, 32))) == CHAINS[chain][1][-1][2]


def test_row_geometry_of_dilated_and_same_padding_convs():
    dilated = rf_table(CHAINS["dilated conv"][0](), (2, 32, 32))[0]
    assert (dilated["kernel"], dilated["dilation"], dilated["k_eff"], dilated["padding"]) == (3, 2, 5, 2)
    assert dilated["kind"] == "dilated conv"
    same = rf_table(CHAINS["kernel 5"][0](), (2, 32, 32))[-1]
    assert (same["kernel"], same["padding"], same["n_in"], same["n_out"]) == (5, 2, 16, 16)


S7_ROWS = [  # (name, kind, j_out, r_out) by hand, as in the S7Net docstring
    ("c1.0.0", "conv", 1, 3), ("pool1", "max-pool", 2, 4), ("c2.0.0", "conv", 2, 8),
    ("c2.1.0.depthwise", "depthwise conv", 2, 12), ("c2.1.0.pointwise", "pointwise conv", 2, 12),
    ("pool2", "max-pool", 4, 14), ("c3.0.0", "dilated conv", 4, 30), ("c3.1.0.depthwise", "depthwise conv", 4, 38),
    ("c3.1.0.pointwise", "pointwise conv", 4, 38), ("pool3", "max-pool", 8, 42), ("c4.0.0", "conv", 8, 58),
    ("c4.1.0", "conv", 8, 74), ("output.0", "global avg-pool", 32, 98),
]


def test_s7net_receptive_field_is_74_analytic():
    model = S7Net()
    rows = rf_table(model)
    assert [(row["name"], row["kind"], row["j_out"], row["r_out"]) for row in rows] == S7_ROWS
    assert rows[-1]["kernel"] == rows[-1]["n_in"] == 4 and rows[-1]["global_pool"] and rows[-1]["output_stage"]
    assert rows[-1]["r_in"] == final_rf(rows) == 74 > 44


@pytest.mark.slow
def test_empirical_rf_with_its_default_arguments_measures_74_on_s7net():
    """The 32x32 image would clip the field: empirical_rf grows the input (to 96x96) until the gradient of the
    centre unit stays off the border."""
    assert empirical_rf(S7Net()) == 74


def test_empirical_rf_is_not_clipped_by_a_small_image():
    model = CHAINS["max-pools"][0]()  # RF 18
    assert empirical_rf(model, (2, 12, 12)) == empirical_rf(model, (2, 20, 20)) == 18


def test_format_ends_with_the_final_receptive_field_and_the_output_stage():
    text = format_rf_table(rf_table(S7Net())).splitlines()
    assert len(text) == 1 + len(S7_ROWS) + 2
    assert text[0].split()[:2] == ["layer", "kind"]
    assert text[7].split() == ["c3.0.0", "dilated", "conv", "3", "1", "2", "2", "8", "->", "8", "4", "->", "4",
                               "14", "->", "30"]
    assert text[-2] == ("final receptive field: 74 px (one unit of the 4x4 map from c4.1.0, which output.0 "
                        "averages; the GAP window is not added)")
    assert text[-3].split()[-4:] == ["74", "->", "whole", "map"]  # global pooling: no field of its own to add
    assert text[-1] == "output stage: output.0, then Flatten, Linear (no spatial field there to grow)"


def test_tracing_leaves_the_model_untouched():
    model = nn.Sequential(conv(padding=1), nn.BatchNorm2d(2), nn.ReLU(inplace=True), nn.MaxPool2d(2), conv())
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert final_rf(rf_table(model, (2, 16, 16))) == empirical_rf(model, (2, 16, 16)) == 8
    assert all(module.training for module in model.modules())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert isinstance(model[3], nn.MaxPool2d) and model[0].weight.dtype == torch.float32


class ResidualNet(nn.Module):
    """stem, then relu(main(x) + shortcut(x)), then GAP: a branching model (the shortcut runs last)."""

    def __init__(self, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.main = nn.Sequential(nn.Conv2d(4, 4, 3, stride, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.shortcut = nn.Conv2d(4, 4, 1, stride) if downsample else nn.Identity()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head(torch.relu(self.main(x) + self.shortcut(x)))


def test_residual_block_with_identity_shortcut():
    model = ResidualNet(downsample=False)
    rows = rf_table(model, (2, 32, 32))
    assert [(row["name"], row["r_out"]) for row in rows] == [("stem", 3), ("main.0", 5), ("main.2", 7), ("add", 7),
                                                             ("head.0", 7 + 31)]
    assert rows[3]["branches"] == (("main.2", 7), ("stem", 3))  # the shortcut carries the stem's field
    assert final_rf(rows) == empirical_rf(model, (2, 32, 32)) == 7


def test_residual_block_with_downsampling_shortcut_is_exact():
    """The shortcut reads the 32x32 stem output: its window is its own (stem 3, then its 1x1 at stride 2), not the
    chain's, which would compound both branches' strides."""
    model = ResidualNet(downsample=True)
    rows = rf_table(model, (2, 32, 32))
    assert [row["name"] for row in rows] == ["stem", "main.0", "main.2", "shortcut", "add", "head.0"]
    assert [(row["j_out"], row["r_out"]) for row in rows[:5]] == [(1, 3), (2, 5), (2, 9), (2, 3), (2, 9)]
    assert not any(row["approximate"] for row in rows)
    assert final_rf(rows) == empirical_rf(model, (2, 32, 32)) == 9  # stem 3, stride-2 conv 5, conv at jump 2: 9


class ParallelBranches(nn.Module):
    """Two 3x3 branches at jump 4 added: each grows the field by 8, so the true field is 36 + 8 = 44, where the
    chain formula, adding every row's growth in the order they run, says 36 + 8 + 8 = 52."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(2, 4, 5, padding=2), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                                   nn.MaxPool2d(2), *(nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)))
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.trunk(x)
        return torch.relu(self.a(x)) + torch.relu(self.b(x))


def test_parallel_branches_count_once():
    model = ParallelBranches()
    rows = rf_table(model, (2, 32, 32))
    chain = 1 + sum((row["k_eff"] - 1) * row["j_in"] for row in rows if row["kernel"] is not None)
    assert chain == 52  # what adding every layer's growth in the order they run says
    assert [(row["name"], row["r_in"], row["r_out"]) for row in rows[-2:]] == [("a", 36, 44), ("b", 36, 44)]
    assert not any(row["approximate"] for row in rows)  # branches of equal fields join without a row of their own
    assert final_rf(rows) == empirical_rf(model, (2, 32, 32)) == 44


def test_depthwise_separable_lecture_example():
    separable, normal = DepthwiseSeparableConv2d(16, 32), nn.Conv2d(16, 32, 3, padding=1, bias=False)
    assert count_parameters(separable) == 16 * 9 + 16 * 32 == 656
    assert count_parameters(normal) == 16 * 32 * 9 == 4608
    x = torch.ones(1, 16, 8, 8)
    assert separable(x).shape == normal(x).shape == (1, 32, 8, 8)
    rows = rf_table(separable, (16, 8, 8))
    assert [(row["name"], row["kind"]) for row in rows] == [("depthwise", "depthwise conv"),
                                                            ("pointwise", "pointwise conv")]
    assert final_rf(rows) == final_rf(rf_table(normal, (16, 8, 8))) == 3
    assert empirical_rf(separable, (16, 8, 8)) == 3


class FixedSize(nn.Module):
    """A learned offset of the image's own 32x32 size before four 9x9 convs (field 33): it runs at 32x32 only."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(1, 2, 32, 32))
        self.convs = nn.Sequential(*(conv(9, padding=4) for _ in range(4)))

    def forward(self, x):
        return self.convs(x + self.offset)


def test_a_network_that_cannot_run_larger_says_so_in_one_line():
    model = FixedSize()
    assert final_rf(rf_table(model, (2, 32, 32))) == 33
    with pytest.raises(ValueError, match=r"^FixedSize cannot run on a 2x64x64 input, needed to measure its field "
                                         r"\(33 px\): RuntimeError: The size of tensor a \(64\) must match") as error:
        empirical_rf(model, (2, 32, 32))
    assert "\n" not in str(error.value)


def test_a_field_beyond_the_largest_probe_is_not_measured_and_says_why():
    """A 3x3 conv with dilation 600 sees 1201 px: the probe image would have to be 1216 px wide, past MAX_SIDE, so
    nothing is probed, and the message says so (it once blamed a gradient at the border of a probe never made)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=600, dilation=600), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert final_rf(rf_table(model)) == 1201
    with pytest.raises(ValueError, match=r"^its analytic field, 1201 px, needs a probe image larger than the 1024 px "
                                         r"this measurement goes to$"):
        empirical_rf(model)


def test_a_transposed_conv_is_marked_approximate_and_named():
    """Its outputs read unequal numbers of inputs: no one (size, jump, start) says every output's window."""
    model = nn.Sequential(conv(stride=2, padding=1), nn.ConvTranspose2d(2, 2, 3, 2, padding=1, output_padding=1),
                          conv(padding=1))
    rows = rf_table(model, (2, 32, 32))
    assert [(row["kind"], row["approximate"]) for row in rows] == [("conv", False), ("transposed conv", True),
                                                                   ("conv", True)]
    assert format_rf_table(rows).splitlines()[-1] == ("* approximate: 1: a transposed conv: its output positions "
                                                      "read unequal numbers of inputs. empirical_rf measures the "
                                                      "field exactly")
    assert empirical_rf(model, (2, 32, 32)) == 7


def test_a_network_on_the_meta_device_is_one_value_error_not_a_crash():
    """The meta device holds shapes without values: the analytic field reads them, the gradients have nothing."""
    model = nets.Upsampled().to("meta")  # approximate analytically: the rule asks for the measurement
    with pytest.raises(ValueError, match="^its weights are on the meta device, which holds no values"):
        empirical_rf(model)
    rule = {check.name: check for check in check_s7(model)}["receptive field"]
    assert rule.measured.startswith("46 px (approximate: its weights are on the meta device") and rule.failed is False
