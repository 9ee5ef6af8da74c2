"""The S7 assignment's requirements, each checked on what the model does rather than on what it is called.

check_s7 traces one forward pass (helpers.receptive_field.execution_order) and inspects the modules that run
and the shapes they see; format_checks renders the results as a table for the notebook.
"""
from dataclasses import dataclass

import torch
from torch import nn

from .device import pick_device
from .models import count_parameters
from .receptive_field import Call, execution_order, final_rf, is_global_pool, rf_rows, text_table

MIN_RF, MAX_PARAMS, MIN_ACCURACY = 44, 1_000_000, 80.0


@dataclass(frozen=True)
class Check:
    """One requirement: what it asks, what the model has, and whether that is enough."""
    name: str
    required: str
    measured: str
    passed: bool


def _is_conv(call: Call) -> bool:
    return isinstance(call.module, nn.Conv2d)


def _architecture(calls: list[Call], input_shape) -> tuple[str, bool]:
    """C1 C2 C3 C4 O: convolutions before, between and after exactly 3 max-pools, then an output stage."""
    convs_per_block = [0]
    for call in calls:
        if isinstance(call.module, nn.MaxPool2d):
            convs_per_block.append(0)
        elif _is_conv(call):
            convs_per_block[-1] += 1
    last_conv = max((i for i, call in enumerate(calls) if _is_conv(call)), default=len(calls))
    output = [type(call.module).__name__ for call in calls[last_conv + 1:]
              if isinstance(call.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d,
                                          nn.MaxPool2d, nn.Flatten, nn.Linear))]
    passed = len(convs_per_block) == 4 and min(convs_per_block) >= 1 and bool(output)
    return (f"{len(convs_per_block) - 1} max-pools, convs {'|'.join(map(str, convs_per_block))}, "
            f"then {', '.join(output) or 'no output stage'}"), passed


def _receptive_field(calls: list[Call], input_shape) -> tuple[str, bool]:
    rows = rf_rows(calls, input_shape[-2])
    rf = final_rf(rows)
    approximate = ", approximate: branches" if any(row["approximate"] for row in rows) else ""
    return f"{rf} px (analytic{approximate})", rf > MIN_RF


def _depthwise_separable(calls: list[Call], input_shape) -> tuple[str, bool]:
    """A depthwise conv (groups == in_channels > 1) whose next conv is a 1x1 taking its output channels."""
    convs = [call for call in calls if _is_conv(call)]
    depthwise = [i for i, call in enumerate(convs) if call.module.groups == call.module.in_channels > 1]
    pairs = [(convs[i], convs[i + 1]) for i in depthwise if i + 1 < len(convs)
             and convs[i + 1].module.kernel_size == (1, 1)
             and convs[i + 1].module.in_channels == convs[i].module.out_channels]
    if pairs:
        more = f" (+{len(pairs) - 1} more)" if len(pairs) > 1 else ""
        return f"{pairs[0][0].name} -> {pairs[0][1].name}{more}", True
    if depthwise:
        return f"depthwise {convs[depthwise[0]].name} is not followed by a 1x1 conv", False
    return "no depthwise conv (groups == in_channels > 1)", False


def _dilated(calls: list[Call], input_shape) -> tuple[str, bool]:
    dilated = [call for call in calls if _is_conv(call) and max(call.module.dilation) >= 2]
    if dilated:
        return f"{dilated[0].name} (dilation {max(dilated[0].module.dilation)})", True
    return "none: every conv has dilation 1", False


def _global_average_pooling(calls: list[Call], input_shape) -> tuple[str, bool]:
    """Average pooling down to 1x1 over the whole map, followed by nothing but Flatten and one Linear at most.

    Module forms only: a functional x.mean((2, 3)) in forward is not seen. Dropout is allowed after it.
    """
    gaps = [i for i, call in enumerate(calls)
            if isinstance(call.module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)) and is_global_pool(call)]
    if not gaps:
        return "none: no average pooling of the whole map to 1x1", False
    gap, after = calls[gaps[-1]], calls[gaps[-1] + 1:]
    then = f", then {', '.join(type(call.module).__name__ for call in after)}" if after else ""
    measured = f"{gap.name} {gap.in_shape[-2]}x{gap.in_shape[-1]} -> 1x1{then}"
    allowed = all(isinstance(call.module, (nn.Flatten, nn.Dropout, nn.Linear)) for call in after)
    linears = sum(isinstance(call.module, nn.Linear) for call in after)
    return measured, allowed and linears <= 1


# (name, required, check of the traced calls) for every requirement read from a forward pass
TRACED = [
    ("architecture C1 C2 C3 C4 O", "convs around exactly 3 max-pools, then output", _architecture),
    ("receptive field", f"> {MIN_RF} px", _receptive_field),
    ("depthwise-separable conv", "depthwise conv -> 1x1 conv", _depthwise_separable),
    ("dilated conv", "dilation >= 2", _dilated),
    ("global average pooling", "to 1x1, then <= 1 Linear", _global_average_pooling),
]


def _device_check(model: nn.Module, device: torch.device | None) -> Check:
    """Where the parameters are, and what the same code picks on this machine (a GPU when it has one)."""
    devices = {parameter.device for parameter in model.parameters()}
    chosen = pick_device()
    here = f"pick_device() picks {chosen}" + (": no GPU found" if chosen.type == "cpu" else "")
    measured = f"on {', '.join(sorted(map(str, devices))) or 'no device: no parameters'}; {here}"
    if device is None:
        return Check("device", "one device; the GPU when there is one", measured, len(devices) == 1)
    passed = bool(devices) and all(found.type == device.type and device.index in (None, found.index)
                                   for found in devices)
    return Check("device", f"on {device}, the device the run chose", measured, passed)


def _accuracy_check(test_accuracy, tta_accuracy=None) -> Check:
    """The plain accuracy is the one that counts; the accuracy with test-time augmentation is shown beside it."""
    if isinstance(test_accuracy, list):
        test_accuracy = test_accuracy[-1]["test_acc"] if test_accuracy else None
    required = f">= {MIN_ACCURACY:g}% without TTA"
    if test_accuracy is None:
        return Check("test accuracy", required, "not given", False)
    beside = f" ({tta_accuracy:.2f}% with TTA)" if tta_accuracy is not None else ""
    return Check("test accuracy", required, f"{test_accuracy:.2f}%{beside}", test_accuracy >= MIN_ACCURACY)


def check_s7(model: nn.Module, test_accuracy=None, *, tta_accuracy=None, device: torch.device | None = None,
             input_shape=(3, 32, 32)) -> list[Check]:
    """One Check per requirement, always the same 8 in the same order; a non-compliant model fails, never raises.

    device: where the parameters must be (the device a run chose); by default anywhere, on one device. The row
    says what pick_device() chooses here either way: the GPU when there is one.
    test_accuracy: the plain accuracy (0-100) or a training history, a list of dicts whose last "test_acc" (plain)
    counts; tta_accuracy, shown beside it. Without it the accuracy check reads "not given" and fails: nothing
    passes by not being measured.
    If the forward pass on a (1, *input_shape) batch fails, every check read from it fails and says why.
    """
    try:
        calls = execution_order(model, input_shape)
    except Exception as error:  # any model the assignment could be given: report, do not crash
        first_line = str(error).partition("\n")[0]
        reason = f"forward on {(1, *input_shape)} failed: {type(error).__name__}: {first_line}"
        traced = [Check(name, required, reason, False) for name, required, _ in TRACED]
    else:
        traced = [Check(name, required, *check(calls, input_shape)) for name, required, check in TRACED]
    parameters = count_parameters(model)
    return [_device_check(model, device), *traced,
            Check("parameters", f"< {MAX_PARAMS:,}", f"{parameters:,}", parameters < MAX_PARAMS),
            _accuracy_check(test_accuracy, tta_accuracy)]


def format_checks(results: list[Check]) -> str:
    """A fixed-width table, one PASS/FAIL row per requirement, then the count passed."""
    lines = [["requirement", "required", "measured", "result"],
             *([check.name, check.required, check.measured, "PASS" if check.passed else "FAIL"]
               for check in results)]
    passed = sum(check.passed for check in results)
    return "\n".join([*text_table(lines, right_from=len(lines[0])), f"{passed}/{len(results)} passed"])
