"""The S7 assignment's requirements as checks: the structural ones read on the traced graph (helpers.checker.rules), the
parameter count, and what one model object can show of its run. Uses-the-GPU is "not checked here" on a machine
without one; the accuracy is "not checked here" when none is given. A notebook's grading replaces those two rows by
what its outputs claim (claimed_accuracy_check, evidence_device_check). format_checks renders the results as a table.
"""
from collections import Counter
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import first_line
from ..models import count_parameters
from ..runtime.device import pick_device
from .rules import TRACED, Reading
from .trace import BATCH, Trace, trace

MAX_PARAMS, MIN_ACCURACY = 1_000_000, 80.0
PASS, FAIL, NOT_CHECKED = "pass", "fail", "not checked here"


@dataclass(frozen=True)
class Check:
    """One requirement: what it asks, what the model has, and whether that is enough (state: PASS, FAIL, or
    NOT_CHECKED where this machine or this call cannot tell)."""
    name: str
    required: str
    measured: str
    state: str

    @property
    def passed(self) -> bool:
        return self.state == PASS

    @property
    def failed(self) -> bool:
        return self.state == FAIL


def _verdict(passed: bool) -> str:
    return PASS if passed else FAIL


ACCELERATORS = ("cuda", "mps", "xpu", "meta")  # meta: the stand-in for a GPU in tests, it holds no data


def _device_check(model: nn.Module, device: torch.device | None) -> Check:
    """Uses the GPU: the parameters on the device the run chose, which is the GPU when the machine has one.
    Without a GPU here it cannot be observed: not checked here, saying what pick_device() chooses and why."""
    devices = {parameter.device for parameter in model.parameters()}
    chosen = pick_device()
    here = (f"pick_device() picks {chosen}" if chosen.type != "cpu" else
            "pick_device() picks cpu: torch finds no CUDA GPU and no Apple MPS here")
    where = f"on {', '.join(sorted(map(str, devices)))}" if devices else "no parameters"
    where += f"; the run chose {device}" if device is not None else ""  # what the run did; the rule stays the same
    required = "on the GPU when there is one"
    if not devices:
        return Check("device", required, f"{where}; {here}", FAIL)
    if device is not None and not all(found.type == device.type and device.index in (None, found.index)
                                       for found in devices):
        return Check("device", required, f"{where}; {here}", FAIL)
    if len(devices) == 1 and next(iter(devices)).type in ACCELERATORS:
        return Check("device", required, f"{where}; {here}", PASS)
    if chosen.type != "cpu" and device is not None:
        return Check("device", required, f"{where}, though {here}", FAIL)
    reason = "" if chosen.type == "cpu" else " (a model on the CPU: give device=, the device its run uses)"
    return Check("device", required, f"{where}; {here}{reason}", NOT_CHECKED)


def _accuracy_check(test_accuracy, tta_accuracy=None, test_images: int | None = None) -> Check:
    """The plain accuracy is the one that counts; the accuracy with test-time augmentation is shown beside it."""
    if isinstance(test_accuracy, list):
        test_accuracy = test_accuracy[-1]["test_acc"] if test_accuracy else None
    required = f">= {MIN_ACCURACY:g}% without TTA"
    if test_accuracy is None:
        return Check("test accuracy", required, "not measured: give test_accuracy", NOT_CHECKED)
    on = f" on {test_images:,} test images" if test_images else ""
    beside = f" ({tta_accuracy:.2f}% with TTA)" if tta_accuracy is not None else ""
    return Check("test accuracy", required, f"{test_accuracy:.2f}% plain{on}{beside}",
                 _verdict(test_accuracy >= MIN_ACCURACY))


def _parameter_check(model: nn.Module, graph: Trace | None) -> Check:
    """Every parameter counts, as model.parameters() gives them; those the forward pass never reads (a block
    defined and not called) are named, since torchsummary, which sees only the layers that run, leaves them out."""
    parameters = count_parameters(model)
    measured = f"{parameters:,}"
    unused = _unused_parameters(model, graph.parameters_read) if graph is not None else {}
    if unused:
        idle = sum(p.numel() for own in unused.values() for p in own)
        measured += (f"; {parameters - idle:,} in the layers forward runs, {idle:,} in {', '.join(unused)}, "
                     f"which it never reads{_choice_note(graph)}")
    return Check("parameters", f"< {MAX_PARAMS:,}", measured, _verdict(parameters < MAX_PARAMS))


def _unused_parameters(model: nn.Module, read: frozenset) -> dict:
    """{name: its parameters} of the largest modules, or single parameters, none of whose parameters the forward
    pass read (`read`: their names, Trace.parameters_read)."""
    unread = {id(parameter) for name, parameter in model.named_parameters() if name not in read}
    unused, covered = {}, set()
    for prefix, module in model.named_modules():  # a module before its children: the largest one is named
        own = list(module.parameters())
        if prefix and own and all(id(p) in unread and id(p) not in covered for p in own):
            unused[prefix] = own
            covered.update(id(p) for p in own)
    for name, parameter in model.named_parameters():
        if id(parameter) in unread and id(parameter) not in covered:
            unused[name] = [parameter]
    return unused


def _choice_note(graph: Trace) -> str:
    """Said where forward chose on the data (Trace.choices): the rules read the one branch this input took."""
    if not graph.choices:
        return ""
    return (f" (on this input: forward chooses on the data, {', '.join(graph.choices)}, and the trace saw only the "
            f"branch it took)")


def _traced_checks(model: nn.Module, graph: Trace, input_shape) -> list[Check]:
    reading = Reading(model, graph, input_shape)
    checks = []
    for name, required, rule in TRACED:
        try:
            measured, passed = rule(reading)
        except Exception as error:  # a network no rule foresaw: said, not raised
            measured, passed = f"this checker cannot read it: {type(error).__name__}: {error}", False
        checks.append(Check(name, required, measured, _verdict(passed)))
    architecture = checks[0]  # what the whole graph is: said to be one branch's
    checks[0] = replace(architecture, measured=architecture.measured + _choice_note(graph))
    return checks


def check_s7(model: nn.Module, test_accuracy=None, *, tta_accuracy=None, device: torch.device | None = None,
             input_shape=(3, 32, 32), test_images: int | None = None) -> list[Check]:
    """One Check per requirement, always the same 8 in the same order; a non-compliant model fails, never raises.

    device: where the parameters must be (the device a run chose). The row passes when they are on a GPU, fails
    when they are elsewhere than `device` or on the CPU of a machine with a GPU, and is not checked on a machine
    without a GPU. test_accuracy: the plain accuracy (0-100) or a training history, a list of dicts whose last
    "test_acc" (plain) counts; tta_accuracy, shown beside it; without one the row is not checked. test_images: how
    many test images the accuracy counts, said beside it.
    If the forward pass on a (BATCH, *input_shape) batch fails, every check read from it fails and says why.
    """
    graph = None
    try:
        graph = trace(model, input_shape)
    except Exception as error:  # any model the assignment could be given: report, do not crash
        reason = f"forward on {(BATCH, *input_shape)} failed: {type(error).__name__}: {first_line(error)}"
        traced = [Check(name, required, reason, FAIL) for name, required, _ in TRACED]
    else:
        traced = _traced_checks(model, graph, input_shape)
    return [_device_check(model, device), *traced, _parameter_check(model, graph),
            _accuracy_check(test_accuracy, tta_accuracy, test_images)]


def claimed_accuracy_check(best: float | None, quoted: str) -> Check:
    """The test accuracy a notebook printed, not measured: the verdict on the best epoch, as graders read the
    assignment; `quoted`: the best and the final with their cells and lines."""
    required = f">= {MIN_ACCURACY:g}% without TTA"
    if best is None:
        return Check("test accuracy", required, "claimed: none, the notebook printed no test accuracy", NOT_CHECKED)
    return Check("test accuracy", required, f"claimed, not measured: {quoted}", _verdict(best >= MIN_ACCURACY))


def evidence_device_check(used_gpu: bool | None, quoted: str) -> Check:
    """Uses the GPU, as a notebook's outputs show it: PASS on a GPU, FAIL on the CPU, not checked when they show
    neither; `quoted`: the evidence (code that asks for CUDA is intent and decides nothing)."""
    state = NOT_CHECKED if used_gpu is None else _verdict(used_gpu)
    return Check("device", "on the GPU (as the notebook's outputs show)", quoted, state)


RESULT = {PASS: "PASS", FAIL: "FAIL", NOT_CHECKED: "not checked here"}
VERDICT = {PASS: "PASS", FAIL: "FAIL", NOT_CHECKED: "not checked"}  # a grading table's cells


def format_checks(results: list[Check]) -> str:
    """One block per requirement: its name and result (PASS, FAIL or not checked here), what it requires and what
    was measured, each on a line of its own (a table with both texts in columns is too wide to read); then the
    counts."""
    lines = []
    for check in results:
        lines += [f"{check.name}: {RESULT[check.state]}", f"  required  {check.required}",
                  f"  measured  {check.measured}"]
    counts = Counter(check.state for check in results)
    total = f"{counts[PASS]} passed, {counts[FAIL]} failed"
    if counts[NOT_CHECKED]:
        total += f", {counts[NOT_CHECKED]} not checked here"
    return "\n".join([*lines, total])
