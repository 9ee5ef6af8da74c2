"""Receptive-field tables against hand-computed values, and the formulas against the gradient ground truth."""
import pytest
import torch
from torch import nn

from helpers.convs import DepthwiseSeparableConv2d
from helpers.models import S7Net, count_parameters
from helpers.receptive_field import empirical_rf, final_rf, format_rf_table, rf_table


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
    assert empirical_rf(model, (2, 64, 64)) == final_rf(rf_table(model, (2, 64, 64))) == CHAINS[chain][1][-1][2]


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


def test_s7net_receptive_field_is_74_analytic_and_empirical():
    model = S7Net()
    rows = rf_table(model)
    assert [(row["name"], row["kind"], row["j_out"], row["r_out"]) for row in rows] == S7_ROWS
    assert rows[-1]["kernel"] == rows[-1]["n_in"] == 4 and rows[-1]["global_pool"]
    assert final_rf(rows) == 74 > 44
    assert empirical_rf(model, (3, 128, 128)) == 74


def test_empirical_rf_is_clipped_by_the_image_border():
    model = CHAINS["max-pools"][0]()  # RF 18
    assert empirical_rf(model, (2, 12, 12)) == 12
    assert empirical_rf(model, (2, 20, 20)) == 18


def test_format_ends_with_the_final_receptive_field():
    text = format_rf_table(rf_table(S7Net())).splitlines()
    assert len(text) == 1 + len(S7_ROWS) + 1
    assert text[0].split()[:2] == ["layer", "kind"]
    assert text[7].split() == ["c3.0.0", "dilated", "conv", "3", "1", "2", "2", "8", "->", "8", "4", "->", "4",
                               "14", "->", "30"]
    assert text[-1] == "final receptive field: 74 px (at c4.1.0, the last layer before global pooling)"
    assert text[-2].split()[-4:] == ["74", "->", "whole", "map"]  # global pooling: no field of its own to add


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
    assert [row["r_out"] for row in rows] == [3, 5, 7, 38]  # GAP: 7 + (32 - 1)
    assert final_rf(rows) == empirical_rf(model, (2, 64, 64)) == 7


def test_residual_block_with_downsampling_shortcut_is_marked_approximate():
    model = ResidualNet(downsample=True)
    rows = rf_table(model, (2, 32, 32))
    assert [row["name"] for row in rows] == ["stem", "main.0", "main.2", "shortcut", "head.0"]
    # the shortcut sees the 32x32 stem output, not the 16x16 map before it in execution order
    assert [row["approximate"] for row in rows] == [False, False, False, True, True]
    assert rows[3]["j_out"] == 4  # the chain formula compounds the two parallel strides: wrong, hence flagged
    assert format_rf_table(rows).endswith("empirical_rf is exact")
    assert empirical_rf(model, (2, 64, 64)) == 9  # stem 3, stride-2 conv 5, conv at jump 2: 9


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
