"""check_s7: S7Net passes every requirement, and each model built to break one requirement fails only that one.
The networks students write, in their many styles, are in test_student_nets.py."""
import dataclasses

import pytest
import torch
from torch import nn

import helpers.checker.spec
from helpers.checker.spec import FAIL, NOT_CHECKED, PASS, Check, check_s7, format_checks
from helpers.convs import conv3x3
from helpers.models import S7Net, count_parameters

CPU = torch.device("cpu")
NAMES = ["device", "architecture C1 C2 C3 C4 O", "receptive field", "depthwise-separable conv", "dilated conv",
         "global average pooling", "parameters", "test accuracy"]


def by_name(model, test_accuracy=85.0, device=CPU) -> dict[str, Check]:
    return {check.name: check for check in check_s7(model, test_accuracy, device=device)}


def failures(results: dict[str, Check]) -> set[str]:
    return {name for name, check in results.items() if check.failed}


def test_s7net_passes_every_requirement(monkeypatch):
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: CPU)
    results = check_s7(S7Net(), 85.0, device=CPU)
    assert [check.name for check in results] == NAMES
    assert [check.state for check in results] == [NOT_CHECKED] + [PASS] * 7  # no GPU: the device row cannot pass
    measured = {check.name: check.measured for check in results}
    assert measured["receptive field"] == "74 px (analytic)"
    assert measured["parameters"] == "671,722"
    assert measured["architecture C1 C2 C3 C4 O"] == ("3 max-pools; convs per block: 1, 3, 3, 2; "
                                                      "then GlobalAvgPool2d, Flatten, Linear")
    assert measured["depthwise-separable conv"] == "c2.1.0.depthwise (3x3 depthwise) -> c2.1.0.pointwise (1x1) (+1 more)"
    assert measured["dilated conv"] == "c3.0.0 (3x3, dilation 2)"
    assert measured["global average pooling"] == "output.0 4x4 -> 1x1, then Flatten, Linear"
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].state = PASS


def s7(change):
    """An S7Net with one thing changed in place by change(net)."""
    net = S7Net()
    change(net)
    return net


def pointwise_c4(net):
    """C4's 3x3 convs become 1x1: the receptive field stops at pool3's 42."""
    for block in net.c4:
        block[0] = nn.Conv2d(block[0].in_channels, block[0].out_channels, 1, bias=False)


def normal_convs(net):
    """Both depthwise-separable convs become normal 3x3 convs."""
    net.c2[1][0], net.c3[1][0] = conv3x3(64, 64), conv3x3(128, 128)


def no_pointwise(net):
    """The depthwise convs stay but feed 3x3 convs instead of 1x1 ones."""
    net.c2[1][0].pointwise, net.c3[1][0].pointwise = conv3x3(64, 64), conv3x3(128, 128)


def output(*layers):
    return lambda net: setattr(net, "output", nn.Sequential(*layers))


BREAKERS = {  # model breaking exactly one requirement, that requirement, a fragment of what it measures
    "2 max-pools": (lambda: s7(lambda net: setattr(net, "pool3", nn.Identity())),
                    "architecture C1 C2 C3 C4 O", "2 max-pools; convs per block: 1, 3, 5; then"),
    "4 max-pools": (lambda: s7(lambda net: net.c4.append(nn.MaxPool2d(2))),
                    "architecture C1 C2 C3 C4 O", "4 max-pools; convs per block: 1, 3, 3, 2, 0"),
    "RF 42": (lambda: s7(pointwise_c4), "receptive field", "42 px (analytic)"),
    "normal convs": (lambda: s7(normal_convs), "depthwise-separable conv", "no depthwise conv"),
    "no pointwise": (lambda: s7(no_pointwise), "depthwise-separable conv",
                     "depthwise c2.1.0.depthwise is followed by c2.1.0.pointwise, a 3x3 conv, not a 1x1"),
    "no dilation": (lambda: S7Net(dilation=1), "dilated conv", "none: every conv has dilation 1"),
    "flatten 4x4": (lambda: s7(output(nn.Flatten(), nn.Linear(192 * 16, 10))),
                    "global average pooling", "none: output.0 flattens the 4x4 map into features"),
    "upsampled after GAP": (lambda: s7(output(nn.AdaptiveAvgPool2d(1), nn.Upsample(scale_factor=2), nn.Flatten(),
                                              nn.Linear(192 * 4, 10))),
                            "global average pooling", "output.1 (interpolate) makes a 2x2 map of it again"),
    "over 1M": (lambda: S7Net(widths=(32, 64, 128, 320)), "parameters", "1,410,794"),
}


@pytest.mark.parametrize("breaker", BREAKERS)
def test_each_broken_requirement_fails_alone(breaker):
    build, name, fragment = BREAKERS[breaker]
    results = by_name(build())
    assert failures(results) == {name}
    assert fragment in results[name].measured


def test_parameter_breaker_is_over_the_limit():
    model = BREAKERS["over 1M"][0]()
    # C4 at 320 wide instead of 192: 128*128*9 + 320*320*9 - 192*192*9 more conv weights, 2*2*128 BN, 128*10 FC
    assert count_parameters(model) == 671_722 + 147_456 + 589_824 + 512 + 1_280 == 1_410_794


def test_parameters_forward_never_reads_are_named_and_still_counted():
    """A spare block is named as a whole, a stray nn.Parameter by its own name; the verdict is on the total."""
    model = S7Net()
    model.spare = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))  # 584 + 16
    model.scale = nn.Parameter(torch.ones(10))
    assert by_name(model)["parameters"].measured == ("672,332; 671,722 in the layers forward runs, 610 in spare, "
                                                     "scale, which it never reads")
    over = S7Net()
    over.spare = nn.Linear(1000, 400)  # 400,400: past the limit though forward never calls it
    assert by_name(over)["parameters"].state == FAIL


def test_wrong_device_fails_and_the_row_says_what_this_machine_would_choose(monkeypatch):
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: CPU)
    results = by_name(S7Net(), device=torch.device("meta"))
    assert failures(results) == {"device"}
    assert results["device"].required == "on the GPU when there is one"
    assert results["device"].measured == ("on cpu; the run chose meta; pick_device() picks cpu: torch finds no CUDA "
                                          "GPU and no Apple MPS here")
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: torch.device("cuda", 0))  # a machine with a GPU
    check = check_s7(S7Net(), 85.0, device=torch.device("cuda", 0))[0]
    assert (check.measured, check.state) == ("on cpu; the run chose cuda:0; pick_device() picks cuda:0", FAIL)


def test_without_a_gpu_the_device_row_is_not_checked_here(monkeypatch):
    """Uses-the-GPU cannot be observed on a machine without one: neither pass nor fail, and the total says so."""
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: CPU)
    for device, run in ((None, ""), (CPU, "; the run chose cpu")):
        check = check_s7(S7Net(), 85.0, device=device)[0]
        assert (check.state, check.passed, check.failed) == (NOT_CHECKED, False, False)
        assert check.required == "on the GPU when there is one"
        assert check.measured == f"on cpu{run}; pick_device() picks cpu: torch finds no CUDA GPU and no Apple MPS here"


def test_a_cpu_run_on_a_machine_with_a_gpu_fails_the_device_row(monkeypatch):
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: torch.device("cuda", 0))
    check = check_s7(S7Net(), 85.0, device=CPU)[0]
    assert (check.state, check.measured) == (FAIL, "on cpu; the run chose cpu, though pick_device() picks cuda:0")
    check = check_s7(S7Net(), 85.0)[0]  # a model alone, no run: it may yet be moved
    assert check.state == NOT_CHECKED and check.measured.endswith("give device=, the device its run uses)")


def test_model_on_another_device_is_traced_there():
    """The meta device stands in for a GPU: the dummy input must follow the parameters, not default to the CPU."""
    results = check_s7(S7Net().to("meta"), 85.0, device=torch.device("meta"))
    assert all(check.passed for check in results)
    assert results[2].measured == "74 px (analytic)"


def test_model_without_parameters_fails_the_device_check():
    check = check_s7(nn.Identity(), device=CPU)[0]
    assert check.measured.startswith("no parameters") and check.failed


@pytest.mark.parametrize("accuracy, measured, state", [
    (85, "85.00% plain", PASS), (80, "80.00% plain", PASS), (79.9, "79.90% plain", FAIL),
    (None, "not measured: give test_accuracy", NOT_CHECKED), ([], "not measured: give test_accuracy", NOT_CHECKED),
    ([{"test_acc": 90.0}, {"test_acc": 81.25}], "81.25% plain", PASS),
    ([{"test_acc": 82.0}, {"test_acc": 79.5}], "79.50% plain", FAIL),
])
def test_accuracy(accuracy, measured, state):
    check = check_s7(nn.Identity(), accuracy, device=CPU)[-1]
    assert (check.name, check.required, check.measured, check.state) == \
        ("test accuracy", ">= 80% without TTA", measured, state)


def test_the_plain_accuracy_counts_and_the_tta_one_is_shown_beside_it():
    check = check_s7(nn.Identity(), 79.92, tta_accuracy=81.31, device=CPU)[-1]
    assert (check.measured, check.passed) == ("79.92% plain (81.31% with TTA)", False)
    assert check_s7(nn.Identity(), 80.36, tta_accuracy=81.39, device=CPU)[-1].passed


def test_model_whose_forward_fails_gets_failed_checks_not_an_exception():
    model = s7(output(nn.Flatten(), nn.Linear(10, 10)))
    results = by_name(model)
    assert failures(results) == set(NAMES[1:6])
    for name in NAMES[1:6]:
        assert results[name].measured.startswith("forward on (2, 3, 32, 32) failed: RuntimeError: mat1 and mat2")


def test_format_checks(monkeypatch):
    monkeypatch.setattr(helpers.checker.spec, "pick_device", lambda: CPU)
    results = check_s7(S7Net(dilation=1), None, device=CPU)
    lines = format_checks(results).splitlines()
    assert len(lines) == 3 * 8 + 1
    assert [line.rpartition(": ")[2] for line in lines[0:-1:3]] == [
        "not checked here", "PASS", "PASS", "PASS", "FAIL", "PASS", "PASS", "not checked here"]
    assert lines[3:6] == ["architecture C1 C2 C3 C4 O: PASS",
                          "  required  convs before, between and after exactly 3 max-pools, then the output stage",
                          f"  measured  {results[1].measured}"]
    assert lines[-1] == "5 passed, 1 failed, 2 not checked here"
