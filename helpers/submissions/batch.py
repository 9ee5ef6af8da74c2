"""Submissions found and graded, each in a child process of its own (child): a fresh temporary working folder,
no GPU (CUDA_VISIBLE_DEVICES=""), a time limit, its own process group so that nothing it starts outlives it. A hang,
a crash, an exit or a file that is not a notebook fills that row's error, and the batch goes on."""
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .load import SOURCES, split_target
from .rows import error_row

HELPERS_ROOT = Path(__file__).resolve().parents[2]  # the folder holding `helpers`, importable from anywhere


class PathError(Exception):
    """A path on the command line that cannot be read at all."""


@dataclass(frozen=True)
class Submission:
    label: str     # as the table shows it: the path given, or the notebook's path inside the folder given
    target: str    # absolute, with its :Name


@dataclass(frozen=True)
class Outcome:
    row: dict
    report: str = ""


def find_submissions(paths: list[str]) -> list[Submission]:
    """A file (with its :Name) is one submission; a folder means every notebook in it, recursively."""
    found = []
    for given in paths:
        path, name = split_target(given)
        if path.is_dir():
            notebooks = sorted(notebook for notebook in path.rglob("*.ipynb")
                               if ".ipynb_checkpoints" not in notebook.parts and notebook.is_file())
            if not notebooks:
                raise PathError(f"{path} holds no notebook (*.ipynb), in it or below")
            found += [Submission(str(notebook), str(notebook.resolve())) for notebook in notebooks]
        elif path.is_file():
            found.append(Submission(given, f"{path.resolve()}:{name}" if name else str(path.resolve())))
        else:
            raise PathError(f"{path} is not a file" + ("" if path.suffix in SOURCES else " or a folder"))
    return found


def grade_in_child(submission: Submission, timeout: float, options: list[str]) -> Outcome:
    """The submission's row (and report) from a child process; its error when the child hangs, dies or exits."""
    with tempfile.TemporaryDirectory(prefix="s7-grading-") as folder:
        result, work = Path(folder) / "result.json", Path(folder) / "work"
        work.mkdir()
        command = [sys.executable, "-m", "helpers.submissions.child", str(result), submission.label,
                   submission.target, *options]
        environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(HELPERS_ROOT), os.environ.get("PYTHONPATH")]))}
        child = subprocess.Popen(command, cwd=work, env=environment, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end(child)
            return Outcome(error_row(submission.label, f"no result within --timeout {timeout:g} s: a hang at import "
                                                       f"or in forward, or a network too slow to check"))
        except BaseException:  # Ctrl-C: the child goes with us
            _end(child)
            raise
        if result.is_file():
            answer = json.loads(result.read_text(encoding="utf-8"))
            if "error" in answer:
                return Outcome(error_row(submission.label, answer["error"]))
            return Outcome(answer["row"], answer["report"])
        return Outcome(error_row(submission.label, _death(child.returncode, stderr)))


def _end(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.communicate()


def _death(status: int, stderr: bytes) -> str:
    """Why a child left no result, in one line."""
    last = (stderr.decode(errors="replace").strip().splitlines() or [""])[-1][:200]
    if status < 0:
        name = signal.Signals(-status).name
        cause = " (out of memory?)" if -status == signal.SIGKILL else ""
        return f"the check process was killed by {name}{cause}{': ' + last if last else ''}"
    return f"the check process ended with status {status} and no result{': ' + last if last else ''}"
