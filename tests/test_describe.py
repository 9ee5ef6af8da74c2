"""The networks described in words: the block table read from the modules, and S7AirNet's ideas read from the
network and the recipes, so that a preset without an idea gets no line for it."""
from dataclasses import replace

import pytest
import torch

from helpers import recipes
from helpers.lecture.describe import airnet_ideas, block_table, layer_words, markdown_table, network_source
from helpers.models import S7AirNet, S7Net, count_macs


def test_s7net_blocks_by_hand():
    model = S7Net().train()
    rows = {row["block"]: row for row in block_table(model)}
    assert list(rows) == ["c1", "pool1", "c2", "pool2", "c3", "pool3", "c4", "output"]
    assert [rows[b]["size"] for b in ("c1", "pool1", "c3", "output")] == ["32x32 -> 32x32", "32x32 -> 16x16",
                                                                         "8x8 -> 8x8", "4x4 -> 1"]
    assert rows["c2"]["channels"] == "32 -> 64" and rows["c4"]["RF at its end"] == "74 px"
    assert rows["c3"]["layers"].startswith("3x3 conv, dilation 2, BN, ReLU, depthwise-separable conv")
    assert rows["c3"]["rule it serves"] == "depthwise-separable, dilated" and rows["c1"]["rule it serves"] == ""
    assert [rows[f"pool{i}"]["rule it serves"] for i in (1, 2, 3)] == [f"max-pool {i} of 3" for i in (1, 2, 3)]
    assert rows["output"]["rule it serves"] == "global average pooling"
    assert sum(int(row["params"].replace(",", "")) for row in rows.values()) == 671_722
    # C4: 128*192*9 + 192*192*9 weights on a 4x4 map; the multiply-adds add up to the whole network's
    assert rows["c4"]["MACs"] == f"{(128 * 192 * 9 + 192 * 192 * 9) * 16:,}" == "8,847,360"
    assert sum(int(row["MACs"].replace(",", "")) for row in rows.values()) == count_macs(model, (3, 32, 32))
    assert model.training  # described on a copy: the model keeps its mode


def test_s7airnet_blocks_show_its_odd_map_sizes_and_its_own_layers():
    rows = {row["block"]: row for row in block_table(S7AirNet())}
    assert [rows[b]["size"] for b in ("c1", "pool1", "pool2", "pool3")] == [
        "32x32 -> 31x31", "31x31 -> 15x15", "15x15 -> 7x7", "7x7 -> 3x3"]
    assert rows["c1"]["layers"] == "2x2 whitening conv (frozen), GELU, 3x3 conv"
    assert rows["c2"]["layers"].startswith("BN (shift only), GELU, 3x3 conv, dilation 2")
    assert rows["output"]["layers"] == "global average pool, linear 256 -> 10, output x 1/9"


def test_layer_words_name_a_depthwise_conv_and_an_unknown_layer():
    assert layer_words(torch.nn.Conv2d(8, 8, 5, groups=8)) == ["5x5 depthwise conv"]
    assert layer_words(torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Flatten())) == ["Dropout"]


def test_markdown_table():
    assert markdown_table([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |"


def test_airnet_ideas_are_read_from_the_network_and_the_recipes():
    ideas = {row["idea"]: row for row in airnet_ideas("full")}
    assert list(ideas) == ["patch whitening", "identity initialisation", "shift-only BatchNorm", "GELU",
                           "normalise after the pool", "scaled output", "Muon", "fast BatchNorm shifts",
                           "alternating flips", "TTA flip-translate"]
    assert "4 of its convs" in ideas["identity initialisation"]["in S7AirNet (full)"]
    assert "peak learning rate 0.06" in ideas["Muon"]["in S7AirNet (full)"]
    assert "multiplied by 1/9" in ideas["scaled output"]["in S7AirNet (full)"]
    assert all(row["why"] and row["source"].startswith("[") for row in ideas.values())
    assert airnet_ideas("s7net") == []  # S7Net against itself: nothing beyond it


def test_an_idea_the_recipe_drops_loses_its_line(monkeypatch):
    full = recipes.PRESETS["full"]
    monkeypatch.setitem(recipes.PRESETS, "full", replace(full, recipe=replace(full.recipe, muon_lr=None,
                                                                              alternate_flip=False)))
    names = [row["idea"] for row in airnet_ideas("full")]
    assert "Muon" not in names and "alternating flips" not in names and "patch whitening" in names


@pytest.mark.parametrize("preset", ["fast", "full"])
def test_every_s7airnet_preset_has_the_same_network_ideas(preset):
    assert [row["idea"] for row in airnet_ideas(preset)][:6] == [row["idea"] for row in airnet_ideas("full")][:6]


def test_the_source_shown_is_the_network_s_class_its_base_and_its_blocks_each_once():
    text = network_source(S7Net())
    heads = [line for line in text.splitlines() if line.startswith("class ")]
    assert heads == ["class S7Net(C1C2C3C4O):", "class C1C2C3C4O(Network):", "class Normalize(nn.Module):",
                     "class ConvBNReLU(nn.Sequential):", "class DepthwiseSeparableConv2d(nn.Module):",
                     "class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):"]
    assert "return self.pointwise(self.depthwise(x))" in text  # the depthwise conv feeds the pointwise one directly
