"""One submission graded: every rule on its network, the accuracy it claims (or its shipped weights measured), the
device its outputs show, the parameter total it printed; as the row of a grading table and as the text that
`python -m helpers.check` prints for one submission. Runs in the child process, beside the student's code."""
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..checker.receptive_field import empirical_rf, format_rf_table, rf_rows
from ..checker.spec import check_s7, claimed_accuracy_check, evidence_device_check, format_checks
from ..checker.trace import trace
from ..errors import first_line
from ..models import count_parameters
from .claims import claimed_accuracies
from .device_evidence import GPU, device_evidence
from .load import NOTEBOOK, Loaded
from .notebook_cells import read_cells
from .printed_totals import total_note
from .rows import checked_row
from .weights import measured_accuracy, with_weights


@dataclass(frozen=True)
class Graded:
    row: dict      # the CSV's columns
    report: str    # the rule table, the receptive-field table, the measured field, the notes


def grade(submission: str, loaded: Loaded, input_shape=(3, 32, 32), weights: Path | None = None, stats=None,
          data_root=None) -> Graded:
    model, notes = loaded.model, list(loaded.notes)
    cells = read_cells(loaded.file) if loaded.file.suffix == NOTEBOOK else []
    measured = None
    if weights is not None:
        model = with_weights(model, weights)
        measured = measured_accuracy(model, stats, data_root)
    checks = {check.name: check for check in check_s7(model, measured, input_shape=input_shape)}
    claims = claimed_accuracies(cells, loaded.cell)
    quoted = f"{claims.best} best, {claims.final} final" if claims.best else "none printed"
    if measured is not None:
        accuracy = checks["test accuracy"]
        checks["test accuracy"] = replace(accuracy, measured=f"{accuracy.measured} on the 10,000 test images with "
                                                             f"{weights.name}; claimed: {quoted}")
    elif cells:
        checks["test accuracy"] = claimed_accuracy_check(claims.best and claims.best.value, quoted)
    evidence = device_evidence(cells)
    if cells:
        checks["device"] = evidence_device_check(None if evidence.used is None else evidence.used == GPU,
                                                 evidence.text)
    printed = total_note(cells, model, input_shape)
    if printed:
        notes.append(printed)
        checks["parameters"] = replace(checks["parameters"], measured=f"{checks['parameters'].measured}; {printed}")
    said = [f"accuracy measured {measured:.2f}% with {weights.name}"] if measured is not None else []
    said += [evidence.text] if cells else []
    row = checked_row(submission, list(checks.values()), network=loaded.name, params=str(count_parameters(model)),
                      rf_px=_leading_px(checks["receptive field"].measured),
                      accuracy_best="" if claims.best is None else str(claims.best),
                      accuracy_final="" if claims.final is None else str(claims.final),
                      evidence="; ".join(said + notes))
    return Graded(row, _report(model, input_shape, list(checks.values()), notes))


def _leading_px(text: str) -> str:
    """"62 px (analytic)" -> "62"; "" where the rule found no field."""
    match = re.match(r"(\d+) px", text)
    return match.group(1) if match else ""


def _report(model, shape, checks, notes) -> str:
    """The rule table, the receptive-field table and the field measured by gradients; the notes on top."""
    parts = ["\n".join(f"note: {note}" for note in notes)] if notes else []
    parts.append(format_checks(checks))
    try:
        parts.append(format_rf_table(rf_rows(trace(model, shape))))
    except Exception as error:  # the rule table already says why the forward pass fails
        parts.append(f"receptive-field table: none, the forward pass fails: {type(error).__name__}: "
                     f"{first_line(error)}")
        return "\n\n".join(parts)
    try:
        field = f"{empirical_rf(model, shape)} px"
    except ValueError as error:  # a field the probe cannot reach: said, the analytic field stands
        field = f"not measured: {error}"
    parts.append(f"measured by gradients: {field}")
    return "\n\n".join(parts)
