"""A grading row: one submission, the columns of the CSV a grader receives, and the CSV itself.

Verdict cells read PASS, FAIL or "not checked"; a row whose submission could not be checked has its `error` set
and every verdict "not checked"."""
import csv
import os
from pathlib import Path

from ..checker.spec import NOT_CHECKED, VERDICT, Check

COLUMNS = ["submission", "network", "params", "rf_px", "architecture", "receptive_field", "depthwise_separable",
           "dilated", "gap", "parameters", "accuracy", "accuracy_best", "accuracy_final", "device", "evidence", "error"]
VERDICT_COLUMNS = {"architecture C1 C2 C3 C4 O": "architecture", "receptive field": "receptive_field",
                   "depthwise-separable conv": "depthwise_separable", "dilated conv": "dilated",
                   "global average pooling": "gap", "parameters": "parameters", "test accuracy": "accuracy",
                   "device": "device"}


def checked_row(submission: str, checks: list[Check], **cells) -> dict:
    """The row of a submission that was checked: one verdict per check, and the other cells as given."""
    row = dict.fromkeys(COLUMNS, "")
    row.update({VERDICT_COLUMNS[check.name]: VERDICT[check.state] for check in checks})
    row.update(cells, submission=submission)
    return row


def error_row(submission: str, error: str) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(dict.fromkeys(VERDICT_COLUMNS.values(), VERDICT[NOT_CHECKED]), submission=submission, error=error)
    return row


def failed(row: dict) -> bool:
    return any(row[column] == "FAIL" for column in VERDICT_COLUMNS.values())


def row_line(row: dict) -> str:
    """One line per submission while a folder is graded."""
    if row["error"]:
        return f"{row['submission']}: error: {row['error']}"
    verdicts = " ".join(f"{column} {row[column]}" for column in VERDICT_COLUMNS.values())
    return f"{row['submission']}: {row['network']}, {row['params']} params, RF {row['rf_px']} px; {verdicts}"


def write_csv(rows: list[dict], path: Path) -> None:
    """All rows at once, through a temporary file: an interrupted write never leaves half a table."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
