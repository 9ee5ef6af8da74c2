"""The notebook's Colab path, offline: a folder holding only the notebook, a stand-in `google.colab` imported at
kernel start (tests/colab_stub), and S7_REPO_URL pointing at a local clone of this repository (its committed code).

"Run all" must pass there, and again in the same folder (a runtime restart: the clone exists, the kernel is back in
the notebook's folder); with the placeholder URL the setup cell must stop with a message naming REPO_URL.
"""
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "S7_Assignment.ipynb"
STUB = Path(__file__).resolve().parent / "colab_stub"  # google/colab + a sitecustomize.py that imports it
CLONE_DIR = "s7"  # the notebook's CLONE_DIR

# Appended to the executed copy only: where the kernel ended up and which `helpers` it imported.
WHERE = "import os, helpers\nprint(os.getcwd())\nprint(helpers.__file__)"

pytestmark = [pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: the Colab path clones"),
              pytest.mark.slow]  # each test runs the notebook, or clones the repository


def colab_env(**extra) -> dict:
    """The kernel's environment: ours, with the stub as the only PYTHONPATH (so `helpers` can't come from here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "S7_REPO_URL")}
    return {**env, "PYTHONPATH": str(STUB), "S7_QUICK": "1", **extra}


def execute(folder: Path, env: dict, cells=None):
    """Execute the copy of the notebook in `folder` (the kernel's working directory); return it, executed."""
    nb = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    nb.cells = nb.cells if cells is None else nb.cells[:cells]
    nb.cells.append(nbformat.v4.new_code_cell(WHERE))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute(
        env=env)
    return nb


def last_lines(nb) -> list:
    return "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory):
    """file:// URL of a fresh clone of this repository: what a student's GitHub copy holds (committed code only)."""
    repo = tmp_path_factory.mktemp("origin") / "s7-advanced-convolutions"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    return repo.as_uri()


@pytest.fixture
def colab_folder(tmp_path):
    """Like /content on Colab: nothing but the notebook."""
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    return tmp_path


def test_run_all_then_run_all_again_after_a_restart(colab_folder, repo_url, real_data_root):
    env = colab_env(S7_REPO_URL=repo_url, CIFAR10_ROOT=str(real_data_root))
    clone = (colab_folder / CLONE_DIR).resolve()
    for run in ("first run", "after a restart"):
        nb = execute(colab_folder, env)
        cwd, helpers_file = last_lines(nb)
        assert Path(cwd) == clone, run
        assert Path(helpers_file).resolve().parent == clone / "helpers", run
    assert sorted(p.name for p in colab_folder.iterdir()) == sorted([NOTEBOOK.name, CLONE_DIR])


def test_placeholder_url_stops_with_a_message_naming_repo_url(colab_folder):
    cells = next(i for i, c in enumerate(nbformat.read(NOTEBOOK, as_version=4).cells) if "REPO_URL" in c.source
                 and c.cell_type == "code") + 1
    with pytest.raises(CellExecutionError) as error:
        execute(colab_folder, colab_env(), cells=cells)
    assert error.value.ename == "RuntimeError"  # raised by the cell itself, not git's CalledProcessError
    assert "REPO_URL" in error.value.evalue.replace("S7_REPO_URL", "") and "S7_REPO_URL" in error.value.evalue
    assert not (colab_folder / CLONE_DIR).exists()
