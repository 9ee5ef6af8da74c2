"""The test accuracies a notebook printed: the best and the final, each with its cell and the line quoted.

These are claims read from text, not measurements: the regular expressions here read printed output, never code.
Forms read: "Accuracy: 8512/10000 (P%)", "Accuracy: P", "test acc: P", "Test Accuracy : P" (P with decimals or
without, "66 %" too), fractions ("val_accuracy: 0.8512"), and tqdm postfixes ("test_acc=P"; a bar's last state
after its carriage returns). Not test accuracies: lines that say train or batch (a training bar),
per-class lines ("car : 100 %"), and means over epochs. A line that names test or validation wins over one that
names neither; one that names neither ("Accuracy: 80.71") counts only when no line names a test.
"""
import re
from dataclasses import dataclass

from .notebook_cells import Cell, printed_lines

OUT_OF = re.compile(r"\d+\s*/\s*\d+\s*\(\s*(\d+(?:\.\d+)?)\s*%\s*\)")                    # 8512/10000 (P%)
AFTER_SIGN = re.compile(r"acc(?:uracy)?\b[^:=\n]{0,60}?[:=]\s*(\d+(?:\.\d+)?)\s*(%)?", re.IGNORECASE)
BEFORE_PERCENT = re.compile(r"acc(?:uracy)?\s+(\d+(?:\.\d+)?)\s*(%)", re.IGNORECASE)       # Test Accuracy P%
TEST = re.compile(r"test|val", re.IGNORECASE)
TRAINING = re.compile(r"train|batch", re.IGNORECASE)
PER_CLASS = re.compile(r"\b(?:plane|airplane|car|automobile|bird|cat|deer|dog|frog|horse|ship|truck)s?\b",
                       re.IGNORECASE)
MEAN = re.compile(r"\b(?:mean|average|avg)\s+(?:(?:test|val\w*)\s+)?acc|\b(?:over|across)\s+(?:all\s+)?(?:the\s+)?"
                  r"epochs", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    value: float  # percent
    cell: Cell
    line: str

    def __str__(self) -> str:
        return f'{self.value:g}% ({self.cell.label}: "{self.line}")'


@dataclass(frozen=True)
class Claims:
    best: Claim | None
    final: Claim | None


def claimed_accuracies(cells: list[Cell], first_cell: int | None = None) -> Claims:
    """The best and the final test accuracy printed from the cell numbered `first_cell` on (the one that made the
    trained network), in the order the cells ran; from every cell when none is printed there."""
    start = next((index for index, cell in enumerate(cells) if cell.number == first_cell), 0)
    found = _test_accuracies(cells[start:]) or _test_accuracies(cells)
    if not found:
        return Claims(None, None)
    return Claims(max(found, key=lambda claim: claim.value), found[-1])


def _test_accuracies(cells: list[Cell]) -> list[Claim]:
    named, unnamed = [], []
    for cell in cells:
        for line in printed_lines(cell.output_text):
            for value, kind in _accuracies_in(line):
                (named if kind == "test" else unnamed).append(Claim(value, cell, line))
    return named or unnamed


def _accuracies_in(line: str) -> list[tuple[float, str]]:
    """(percent, "test" or "unnamed") for each test accuracy on the line. Where the words just before one number
    name a test ("val_accuracy"), a number on the same line with no such word before it is the training one
    ("accuracy: 0.90 - val_accuracy: 0.85")."""
    if PER_CLASS.search(line) or MEAN.search(line):
        return []
    for pattern in (OUT_OF, AFTER_SIGN, BEFORE_PERCENT):
        matches = [(match, _said_before(line, match.start())) for match in pattern.finditer(line)]
        if any(said == "test" for _, said in matches):
            matches = [(match, said) for match, said in matches if said == "test"]
        found = [(value, said or _said_by(line)) for match, said in matches
                 if (value := _percent(match)) is not None]
        found = [(value, kind) for value, kind in found if kind != "training"]
        if found:
            return found
    return []


def _said_before(line: str, start: int) -> str | None:
    """What the words just before a number's label say: "test", "training" or None."""
    return _said_by(line[max(0, start - 12):start], None)


def _said_by(text: str, neither="unnamed") -> str | None:
    if TEST.search(text):
        return "test"
    if TRAINING.search(text):
        return "training"
    return neither


def _percent(match) -> float | None:
    value = float(match.group(1))
    has_sign = match.re is OUT_OF or match.group(2) == "%"
    if not has_sign and "." in match.group(1) and value <= 1:  # a fraction: 0.8512
        value *= 100
    return round(value, 4) if 0 <= value <= 100 else None
