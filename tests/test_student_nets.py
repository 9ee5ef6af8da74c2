"""The checker on networks written the ways students write this assignment (tests/student_nets.py): each verdict,
and each analytic field against the gradient measurement.

The ten ways the old checker went wrong, each with its network here:
 1. a 1x1 conv classifier after GAP (OneByOneHead, Pointless): architecture and GAP pass;
 2. convs after GAP are no C4 (HeadConvsOnly): the architecture fails;
 3. a grouped 1x1 is no pointwise conv (GroupedPointwise);
 4. a 1x1 depthwise conv filters nothing (Pointless);
 5. a 1x1 conv with dilation 2 dilates nothing (Pointless);
 6. parallel branches (BranchesAdd, Inception, ResNet, ConvNeXtStyle, WithAttention): each branch's field is its
    own;
 7. GAP written as a function (Functional: x.mean, ViewMean, SumPool, Inception: F.avg_pool2d, ResNet);
 8. max-pools written as F.max_pool2d (Functional, HeadConvsOnly, BranchesAdd): counted, and averaged in the probe;
 9. empirical_rf not clipped by the 32x32 image, and an AvgPool2d(4) used as GAP (OneByOneHead) still probes the
    map it averages at 32x32; a head hard-coded to 32x32 (HardCodedView) does not stop the probe, nor an
    AdaptiveAvgPool2d(2) whose windows grow with the input (AdaptiveTwo);
10. the RF table stops at GAP (OneByOneHead, HeadConvsOnly): the head's 1x1 convs are no rows.

And what published solutions showed it saying wrongly or too little: an output stage that reads part of the map
called "whole map" (StridedHead), parameters forward never reads counted without a word (SpareBlock), a depthwise
conv followed by a pool or by the global pool said "not followed by a conv" (GroupedNotSeparable), an empty C4
left to the counts, a network that needs arguments refused without saying how to name a factory; and two it judged
wrong: a 1x1 conv with padding_mode="reflect" (F.pad before it) missed as the pointwise conv (ReflectPadded), and a
third max-pool that leaves 1x1 of a 3x3 map called a global max-pool of the whole map (PoolToOne).
"""
import pytest
from torch import nn

import tests.student_nets as nets
from helpers.checker.receptive_field import empirical_rf, final_rf, format_rf_table, rf_table
from helpers.checker.spec import check_s7

ARCHITECTURE, RF, SEPARABLE, DILATED, GAP = ("architecture C1 C2 C3 C4 O", "receptive field",
                                             "depthwise-separable conv", "dilated conv", "global average pooling")

# network -> (the rules it fails, its analytic field, what the row of a rule says: {rule: fragment})
VERDICTS = {
    "OneByOneHead": (set(), 48, {ARCHITECTURE: "3 max-pools; convs per block: 2, 2, 1, 1; then AvgPool2d, Conv2d, view, log_softmax",
                                 GAP: "gap.0 4x4 -> 1x1, then Conv2d, view, log_softmax"}),
    "HeadConvsOnly": ({ARCHITECTURE, RF}, 40, {ARCHITECTURE: "3 max-pools; convs per block: 2, 2, 2, 0 (C4 has no conv); then "
                                                             "AdaptiveAvgPool2d, "
                                                             "Conv2d, ReLU, Conv2d, view, log_softmax",
                                               RF: "40 px (analytic)", GAP: "gap 4x4 -> 1x1, then Conv2d, ReLU, Conv2d"}),
    "Functional": (set(), 62, {ARCHITECTURE: "3 max-pools; convs per block: 1, 2, 1, 2; then mean, Linear",
                               GAP: "mean 4x4 -> 1x1, then Linear", SEPARABLE: "dw (3x3 depthwise) -> pw (1x1)"}),
    "GroupedPointwise": ({SEPARABLE}, 62, {SEPARABLE: "depthwise dw is followed by pw, a 1x1 conv with groups 4: it "
                                                      "mixes no channels across its groups"}),
    "Pointless": ({SEPARABLE, DILATED}, 54, {
        SEPARABLE: "net.3 is depthwise but 1x1: it filters nothing spatially",
        DILATED: "none: net.9 has dilation 2 but a 1x1 kernel: dilation changes nothing there",
        GAP: "net.18 4x4 -> 1x1, then Conv2d, Flatten"}),
    "BranchesAdd": (set(), 46, {RF: "46 px (analytic)", DILATED: "b (3x3, dilation 2)"}),
    "Inception": (set(), 74, {GAP: "avg_pool2d 4x4 -> 1x1, then squeeze, log_softmax"}),
    "ResNet": (set(), 82, {ARCHITECTURE: "3 max-pools; convs per block: 3, 3, 4, 2; then adaptive_avg_pool2d, view, Linear, "
                                         "log_softmax"}),
    "StrideInsteadOfPool": ({ARCHITECTURE}, 50, {ARCHITECTURE: "2 max-pools; convs per block: 1, 2, 3; then AdaptiveAvgPool2d"}),
    "ModuleListLoop": (set(), 77, {GAP: "adaptive_avg_pool2d 5x5 -> 1x1, then flatten, Linear",
                                   SEPARABLE: "blocks.1.4 (5x5 depthwise) -> blocks.1.6 (1x1)"}),
    "DepthMultiplier": (set(), 64, {SEPARABLE: "c2.0.0 (3x3 depthwise, depth multiplier 2) -> c2.1.0 (1x1)"}),
    "WholeMapConv": ({GAP}, 46, {GAP: "none: c4.2, a 4x4 conv on the 4x4 map, reduces it to 1x1 (a fully connected "
                                      "layer, not an average); gap then averages a 1x1 map: nothing",
                                 RF: "46 px (analytic); c4.2, a 4x4 conv on the whole 4x4 map, is read as a fully "
                                     "connected layer: counted as a conv, its output's field is 70 px"}),
    "ViewMean": (set(), 64, {GAP: "mean 4x4 -> 1x1, then Linear, log_softmax"}),
    "SumPool": (set(), 62, {GAP: "sum 4x4 -> 1x1, then div, Linear"}),
    "SumOnly": ({GAP}, 62, {GAP: "none: sum sums the 4x4 map without dividing by its 16 positions: a sum"}),
    "WithSqueezeExcite": (set(), 38, {RF: "the whole input (c2.3.mul merges a global pool back into the map)"}),
    "HardCodedView": ({ARCHITECTURE, RF, SEPARABLE, DILATED, GAP}, 16, {
        ARCHITECTURE: "2 max-pools; convs per block: 1, 1, 0 (C3 has no conv); then view, Linear, relu, Linear",
        GAP: "none: view flattens the 5x5 map into features; nothing averages it"}),
    "ConvNeXtStyle": (set(), 60, {SEPARABLE: "b1.dw (7x7 depthwise) -> b1.pw1 (Linear on the channels: a 1x1 conv)"}),
    "Upsampled": ({RF}, 46, {RF: "42 px (measured by gradients; the formulas cannot follow interpolate: nearest"}),
    "AdaptiveTwo": ({GAP}, 54, {GAP: "none: f.9 flattens the 2x2 map into features; nothing averages it"}),
    "RawParameters": (set(), 46, {SEPARABLE: "conv2d#2 (3x3 depthwise) -> conv2d#3 (1x1)",
                                  DILATED: "conv2d#4 (3x3, dilation 2)", GAP: "mean 4x4 -> 1x1, then linear"}),
    "WithAttention": (set(), 58, {RF: "58 px (analytic)"}),
    "StridedHead": ({ARCHITECTURE, RF, GAP}, 26, {GAP: "none: out, a 1x1 conv with stride 2 on the 2x2 map, reads only part "
                                                      "of it (neither an average nor a fully connected layer)"}),
    "SpareBlock": (set(), 46, {"parameters": "9,994; 5,322 in the layers forward runs, 4,672 in spare, which it never "
                                             "reads"}),
    "GroupedNotSeparable": ({SEPARABLE}, 54, {SEPARABLE: "depthwise c2.0.0 is followed by max_pool2d#2 before any conv, not "
                                                         "by a 1x1 conv; depthwise c4.0.0 is followed by c4.1, the output "
                                                         "stage: a 1x1 conv after the global pool is its fully connected "
                                                         "layer, not a pointwise conv"}),
    "ReflectPadded": (set(), 46, {SEPARABLE: "c2.0 (3x3 depthwise) -> c2.4 (1x1)"}),
    "PoolToOne": ({ARCHITECTURE, RF, GAP}, 40, {
        ARCHITECTURE: "2 max-pools (+pool#3, which leaves a 1x1 map: the output stage begins there); convs per block: "
                      "2, 3, 2; then MaxPool2d, Conv2d",
        GAP: "none: pool#3 takes the maximum of 2x2 of the 3x3 map, not the average; c4.1 then averages a 1x1 map: "
             "nothing"}),
    "PartialAverageHead": ({GAP}, 46, {
        RF: "62 px (analytic), what each logit sees: gap.0 averages 3x3 of the 4x4 map, not all of it, and one unit of "
            "that map has 46 px",
        GAP: "none: gap.0 averages 3x3 of the 4x4 map, not all of it"}),
    "ChoosesOnTheData": (set(), 50, {
        ARCHITECTURE: "then mean, Linear (on this input: forward chooses on the data, bool of gt, and the trace saw "
                      "only the branch it took)",
        "parameters": "584 in small, which it never reads (on this input: forward chooses on the data, bool of gt"}),
    "build": (set(), 72, {GAP: "24 4x4 -> 1x1, then Flatten, Linear, BatchNorm1d, ReLU, Dropout, Linear, "
                               "LogSoftmax"}),
}


@pytest.mark.parametrize("name", VERDICTS)
def test_verdicts_on_students_networks(name):
    failing, analytic, says = VERDICTS[name]
    checks = {check.name: check for check in check_s7(getattr(nets, name)(), 85.0)}
    assert {check.name for check in checks.values() if check.failed} == failing
    for rule, fragment in says.items():
        assert fragment in checks[rule].measured, checks[rule].measured
    assert ("chooses on the data" in checks[ARCHITECTURE].measured) == (name == "ChoosesOnTheData")
    assert final_rf(rf_table(getattr(nets, name)())) == analytic


SLOW = {"Inception", "ResNet"}
MEASURED = {name: analytic for name, (_, analytic, _) in VERDICTS.items()} | {"Upsampled": 42}
MEASURED.pop("WithSqueezeExcite")
MEASURED.pop("ChoosesOnTheData")  # the probe's brighter input takes the other branch


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                                  for name in MEASURED])
def test_the_analytic_field_is_the_measured_one(name):
    """empirical_rf with its default arguments: the image grows from 32x32 until the gradient stays off its
    border. Upsampled's field the formulas only estimate (46, marked); the measurement is what the rule uses."""
    assert empirical_rf(getattr(nets, name)()) == MEASURED[name]


def test_a_field_as_large_as_the_input_cannot_be_measured_and_says_so():
    with pytest.raises(ValueError, match=r"^the field is the whole input \(c2.3.mul merges a global pool back"):
        empirical_rf(nets.WithSqueezeExcite())


def test_a_fixed_avgpool_gap_is_probed_on_the_map_it_averages_at_32():
    """AvgPool2d(4) averages the whole 4x4 map at 32x32; at the 96x96 of the probe it would not. The probe takes
    the map it averages at 32x32 and stops there. Checked at 64x64, the network is another one: its pool averages
    4x4 windows of an 8x8 map, and the field that counts is that of the 2x2 map its view(-1, 10) flattens."""
    model = nets.OneByOneHead()
    rows = rf_table(model)
    assert (rows[-1]["name"], rows[-1]["kind"], rows[-1]["n_in"]) == ("gap.0", "global avg-pool", 4)
    assert empirical_rf(model) == 48
    assert final_rf(rf_table(model, (3, 64, 64))) == empirical_rf(model, (3, 64, 64)) == 48 + 3 * 8


def test_the_rf_table_stops_at_the_global_pool():
    text = format_rf_table(rf_table(nets.HeadConvsOnly())).splitlines()
    assert [line.split()[0] for line in text[1:-2]] == ["c1.0", "c1.2", "max_pool2d", "c2.0", "c2.1", "max_pool2d#2",
                                                        "c3.0", "c3.2", "max_pool2d#3", "gap"]
    assert text[-3].split()[-4:] == ["40", "->", "whole", "map"]
    assert text[-1] == "output stage: gap, then Conv2d, ReLU, Conv2d, view, log_softmax (no spatial field there to grow)"


def test_an_output_stage_that_reads_part_of_the_map_gives_the_field_of_what_it_reads():
    """StridedHead's 1x1 stride-2 conv reads the top-left unit of the 2x2 map, and the avg-pool of a 9x9 window on
    an 11x11 map reads 9x9 of it: neither row is "whole map", and the table names them so."""
    rows = rf_table(nets.StridedHead())
    assert (rows[-1]["kind"], rows[-1]["r_in"], rows[-1]["r_out"], rows[-1]["covers"]) == \
        ("conv on part of the map", 26, 26, False)
    text = format_rf_table(rows).splitlines()
    assert text[-3].split()[-3:] == ["26", "->", "26"]
    assert text[-2] == ("final receptive field: 26 px (one unit of the 2x2 map from avg, which out reads as a conv on "
                        "part of the map; no GAP)")
    partial = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(3), nn.Conv2d(8, 8, 3, padding=1),
                            nn.AvgPool2d(9), nn.Flatten())  # 32 -> 10 after the pool; the 9x9 window at jump 3
    row = rf_table(partial)[-1]
    assert (row["kind"], row["r_in"], row["r_out"]) == ("avg-pool of part of the map", 11, 11 + 8 * 3)
    assert "which 3 reads as an avg-pool of part of the map; no GAP; each logit sees 3's output, 35 px)" in \
        format_rf_table(rf_table(partial))


def test_functional_max_pools_are_counted_and_averaged_in_the_probe():
    rows = rf_table(nets.Functional())
    assert [row["name"] for row in rows if row["kind"] == "max-pool"] == ["max_pool2d", "max_pool2d#2",
                                                                          "max_pool2d#3"]
    assert [row["j_out"] for row in rows if row["kind"] == "max-pool"] == [2, 4, 8]


@pytest.mark.parametrize("between", nets.BETWEEN)
def test_a_hand_written_activation_or_norm_between_the_halves_keeps_the_conv_separable(between):
    """x * sigmoid(x) reads the depthwise conv's output twice, a channel LayerNorm through its means: every input
    derives from the one path, position by position, so the 1x1 conv after them is still the pointwise half."""
    checks = {check.name: check for check in check_s7(nets.BetweenHalves(nets.BETWEEN[between]()))}
    assert checks[SEPARABLE].measured == "dw (3x3 depthwise) -> pw (1x1)" and not checks[SEPARABLE].failed
    assert {check.name for check in checks.values() if check.failed} == set()


def test_a_gate_from_another_path_between_the_halves_is_no_separable_conv():
    checks = {check.name: check for check in check_s7(nets.GatedByItsInput())}
    assert checks[SEPARABLE].failed
    assert checks[SEPARABLE].measured == "depthwise dw is followed by mul before any conv, not by a 1x1 conv"


@pytest.mark.parametrize("residual", [False, True], ids=["only path", "residual branch"])
@pytest.mark.parametrize("norm", [lambda: nets.centred, lambda: nets.ChannelLayerNorm(16), lambda: nets.channel_norm],
                         ids=["x - mean as a function", "ChannelLayerNorm module", "channel_norm function"])
def test_the_measured_field_goes_through_a_channel_norm(norm, residual):
    """With equal weights every channel carried the same values, x - mean(x) was exactly 0 and passed no gradient:
    "no gradient reaches the input" on the only path, the skip's 46 px in a residual branch instead of 78."""
    model = nets.NormBeforeGap(norm(), residual)
    assert empirical_rf(model) == final_rf(rf_table(model)) == (78 if residual else 46)
