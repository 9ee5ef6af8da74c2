"""python -m helpers.check on notebooks and folders: each submission in a child process of its own, one row each,
the CSV, and the status set by the parent whatever the student's code does (exit, hang, crash, not a notebook)."""
import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.check import main
from helpers.data import default_data_root, find_layout
from helpers.submissions.rows import COLUMNS
from tests.grading_notebooks import NET, SMALL, cell, colab_notebook, write_notebook

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args) -> tuple[int, str, str]:
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_one_notebook_prints_the_rules_the_claim_and_the_device(tmp_path, capsys):
    status, out, err = run(capsys, colab_notebook(tmp_path / "colab.ipynb"))
    assert status == 0 and err == ""
    assert out.startswith("note: built as Net(**config) (cell 4 [3])\n")
    assert ('device: PASS\n  required  on the GPU (as the notebook\'s outputs show)\n  measured  cell 4 [3]: "Using '
            'device: cuda"; intent, not use: cell 4 [3]: device = torch.device(\'cuda\' if torch.cuda.is_available() '
            'else \'cpu\')') in out
    assert ('test accuracy: PASS\n  required  >= 80% without TTA\n  measured  claimed, not measured: 85.12% (cell 5 '
            '[4]: "Test set: Average loss: 0.4011, Accuracy: 8512/10000 (85.12%)") best, 84.33% (cell 5 [4]: "Test '
            'set: Average loss: 0.4102, Accuracy: 8433/10000 (84.33%)") final') in out
    assert "8 passed, 0 failed" in out and out.rstrip().endswith("measured by gradients: 62 px")


@pytest.mark.slow  # several seconds: the quick tier keeps to about two minutes
def test_a_folder_run_writes_the_csv_and_bad_submissions_do_not_stop_it(tmp_path, capsys):
    folder = tmp_path / "submissions"
    colab_notebook(folder / "alice" / "S7.ipynb")
    write_notebook(folder / "bob" / "S7.ipynb", cell(NET + SMALL, "", 1),
                   cell("model = Small()\nprint(device)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)",
                        "cpu\n", 2),
                   cell("train(model)", "Test set: Average loss: 1.1, Accuracy: 6012/10000 (60%)\n", 3))
    (folder / "carol").mkdir()
    (folder / "carol" / "S7.ipynb").write_text("<html>not a notebook</html>")
    write_notebook(folder / "dave" / "S7.ipynb",
                   cell("import sys\nimport torch.nn as nn\nclass Net(nn.Module):\n    sys.exit(0)", "", 1))
    (folder / "eve" / ".ipynb_checkpoints").mkdir(parents=True)  # Jupyter's copies are not submissions
    write_notebook(folder / "eve" / ".ipynb_checkpoints" / "S7-checkpoint.ipynb", cell("x = 1"))
    table = tmp_path / "grades.csv"
    status, out, err = run(capsys, folder, "--csv", table)
    assert status == 2 and err == ""  # two submissions could not be checked
    with open(table, newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        rows = {Path(row["submission"]).parent.name: row for row in reader}
    assert list(rows) == ["alice", "bob", "carol", "dave"]
    alice, bob, carol, dave = rows.values()
    assert [alice[column] for column in COLUMNS[1:11]] + [alice["device"]] == ["Net", "7578", "62"] + ["PASS"] * 8
    assert alice["accuracy_final"].startswith("84.33% (cell 5 [4]: ") and alice["error"] == ""
    assert alice["evidence"].startswith('cell 4 [3]: "Using device: cuda"; intent, not use: ')
    assert (bob["network"], bob["architecture"], bob["parameters"], bob["accuracy"], bob["device"]) == (
        "Small", "FAIL", "PASS", "FAIL", "FAIL")
    assert bob["accuracy_best"] == '60% (cell 3 [3]: "Test set: Average loss: 1.1, Accuracy: 6012/10000 (60%)")'
    assert carol["error"].startswith(f"{folder}/carol/S7.ipynb is not a notebook that can be read: ")
    assert dave["error"] == "the submission's code called sys.exit(0): nothing of it could be checked"
    assert {carol[column] for column in [*COLUMNS[4:11], "device"]} == {"not checked"}
    assert out.splitlines()[-1] == f"4 submissions in {out.splitlines()[-1].split(' in ')[1].split(' s')[0]} s; " \
                                   f"the table is in {table}"


@pytest.mark.parametrize("source, code", [
    ("import sys\nsys.exit(0)\n", "0"),  # at import: it gave status 0, every rule passing, with no output
    (NET.replace("    def forward(self, x):\n", "    def forward(self, x):\n        raise SystemExit('bye')\n"),
     "'bye'"),
])
def test_the_checked_file_does_not_decide_the_status(tmp_path, capsys, source, code):
    exits = tmp_path / "exits.py"
    exits.write_text(source)
    assert run(capsys, exits) == (2, "", f"error: the submission's code called sys.exit({code}): nothing of it "
                                         f"could be checked\n")


@pytest.mark.slow
def test_a_hanging_import_in_a_folder_and_a_hanging_forward_end_in_one_line_each(tmp_path, capsys):
    folder = tmp_path / "folder"
    colab_notebook(folder / "good.ipynb")
    (folder / "slow_module.py").write_text("while True:\n    pass\n")
    write_notebook(folder / "hangs.ipynb", cell("from slow_module import Net\nmodel = Net()\nmodel.train()", "", 1))
    status, out, _ = run(capsys, folder, "--timeout", "40")
    assert status == 2
    assert f"{folder}/hangs.ipynb: error: no result within --timeout 40 s: a hang at import or in forward" in out
    assert f"{folder}/good.ipynb: Net, 7578 params, RF 62 px; architecture PASS" in out
    forward = tmp_path / "forward.py"
    forward.write_text(NET.replace("    def forward(self, x):\n", "    def forward(self, x):\n        while True:\n"
                                                                  "            pass\n"))
    assert run(capsys, forward, "--timeout", "20") == (2, "", "error: no result within --timeout 20 s: a hang at "
                                                              "import or in forward, or a network too slow to check\n")


@pytest.mark.slow
def test_ctrl_c_on_a_hung_check_is_one_line(tmp_path):
    hangs = tmp_path / "hangs.py"
    hangs.write_text("while True:\n    pass\n")
    command = subprocess.Popen([sys.executable, "-m", "helpers.check", str(hangs)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(12)  # the command has started its child, which hangs
    command.send_signal(signal.SIGINT)
    out, err = command.communicate(timeout=60)
    assert (command.returncode, out, err) == (130, "", "error: interrupted after 0 of 1 submissions\n")


@pytest.mark.slow
def test_shipped_weights_are_measured_on_the_test_images_with_the_claim_beside(tmp_path, capsys):
    root = default_data_root()
    if find_layout(root) is None:
        pytest.skip(f"the real CIFAR-10 is not in {root}")
    notebook = colab_notebook(tmp_path / "colab.ipynb")
    namespace = {}
    exec(NET, namespace)
    torch.manual_seed(0)
    torch.save({"model_state_dict": namespace["Net"]().state_dict()}, tmp_path / "weights.pt")
    status, out, _ = run(capsys, notebook, "--weights", tmp_path / "weights.pt", "--normalize", "cifar")
    line = next(line for line in out.splitlines() if "on the 10,000 test images" in line)
    measured = float(line.split("measured  ")[1].split("%")[0])
    assert status == 1 and 0 <= measured < 30  # an untrained network: near chance, far below its claim
    assert line.endswith("on the 10,000 test images with weights.pt; claimed: 85.12% (cell 5 [4]: \"Test set: Average "
                         "loss: 0.4011, Accuracy: 8512/10000 (85.12%)\") best, 84.33% (cell 5 [4]: \"Test set: Average "
                         "loss: 0.4102, Accuracy: 8433/10000 (84.33%)\") final")
    assert run(capsys, notebook, "--weights", tmp_path / "none.pt")[0] == 2
