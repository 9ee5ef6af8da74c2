"""python -m helpers.check on a .py file: status 0 when every rule the network alone can show passes, 1 when one fails,
2 when the file or the name is not there (one error line). Each check runs in a child process; what the loader
refuses is tested in this process, through load_entry, which gives the child its error line."""
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.check import main
from helpers.submissions.load import LoadError, load_entry

NETS = Path(__file__).with_name("student_nets.py")


def run(capsys, *args) -> tuple[int, str, str]:
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_compliant_network_exits_0_and_prints_both_tables(capsys):
    status, out, err = run(capsys, f"{NETS}:Functional")
    assert status == 0 and err == ""
    assert "6 passed, 0 failed, 2 not checked here" in out  # device and accuracy: properties of a run
    assert "final receptive field: 62 px (one unit of the 4x4 map from c5, which mean averages" in out
    assert out.rstrip().endswith("measured by gradients: 62 px")


def test_a_network_that_breaks_a_rule_exits_1(capsys):
    status, out, _ = run(capsys, f"{NETS}:GroupedPointwise")
    assert status == 1 and "a 1x1 conv with groups 4" in out


def test_a_factory_and_another_input_size(capsys):
    status, out, _ = run(capsys, f"{NETS}:build", "--input", "3x64x64")
    assert status == 0
    assert "global avg-pool  8  8  0  1     8 -> 1" in out  # the map is 8x8 at 64x64


def test_without_a_name_the_files_net_class_is_taken(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text("import torch.nn as nn\n\nclass Block(nn.Module):\n    pass\n\n"
                    "class Net(nn.Sequential):\n    def __init__(self):\n"
                    "        super().__init__(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    status, out, _ = run(capsys, path)
    assert status == 1 and "0 max-pools; convs per block: 1; then AdaptiveAvgPool2d, Flatten" in out


def test_a_field_the_probe_cannot_reach_and_a_forward_that_fails_are_each_one_line(tmp_path, capsys):
    path = tmp_path / "wide.py"
    path.write_text("import torch.nn as nn\n\ndef wide():\n    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=600, "
                    "dilation=600), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n\n"
                    "def gray():\n    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1))\n")
    status, out, _ = run(capsys, f"{path}:wide")
    assert status == 1 and "final receptive field: 1201 px" in out
    assert out.rstrip().endswith("measured by gradients: not measured: its analytic field, 1201 px, needs a probe "
                                 "image larger than the 1024 px this measurement goes to")
    status, out, _ = run(capsys, f"{path}:gray")
    assert status == 1 and out.rstrip().splitlines()[-1].startswith(
        "receptive-field table: none, the forward pass fails: RuntimeError: ")


@pytest.mark.parametrize("target, message", [
    ("{tmp}/missing.py:Net", "{tmp}/missing.py is not a file"),
    ("{tmp}/broken.py:Net", "cannot import {tmp}/broken.py: SyntaxError: "),
    ("{tmp}/raises.py:Net", "cannot import {tmp}/raises.py: ModuleNotFoundError: No module named "
                            "'a_module_nobody_installed'"),
    ("{nets}:Nett", "{nets} has no 'Nett' (it defines: AdaptiveTwo, BasicBlock, "),
    ("{tmp}/two.py", "{tmp}/two.py defines 2 nn.Module classes (A, B): name one, or a function that builds "
                     "the network, {tmp}/two.py:Name"),
    ("{tmp}/two.py:make", "make() returned a int, not an nn.Module"),
    ("{tmp}/args.py", "Net() failed: TypeError: Net.__init__() missing 1 required positional argument: "
                      "'width' (it is built with no arguments: add `def build(): return Net(...)`, with your "
                      "arguments, to args.py and name {tmp}/args.py:build)"),
])
def test_what_cannot_be_loaded_is_one_line(tmp_path, target, message):
    (tmp_path / "broken.py").write_text("class Net(:\n")
    (tmp_path / "raises.py").write_text("import a_module_nobody_installed\n")
    (tmp_path / "two.py").write_text("import torch.nn as nn\nclass A(nn.Module): pass\nclass B(nn.Module): pass\n"
                                     "def make():\n    return 3\n")
    (tmp_path / "args.py").write_text("import torch.nn as nn\nclass Net(nn.Module):\n"
                                      "    def __init__(self, width):\n        super().__init__()\n")
    with pytest.raises(LoadError) as caught:
        load_entry(target.format(tmp=tmp_path, nets=NETS))
    assert str(caught.value).startswith(message.format(tmp=tmp_path, nets=NETS)) and "\n" not in str(caught.value)


def test_what_cannot_be_loaded_exits_2_with_one_error_line(tmp_path, capsys):
    assert run(capsys, tmp_path / "missing.py:Net") == (2, "", f"error: {tmp_path}/missing.py is not a file\n")
    (tmp_path / "two.py").write_text("import torch.nn as nn\nclass A(nn.Module): pass\nclass B(nn.Module): pass\n")
    assert run(capsys, tmp_path / "two.py") == (2, "", f"error: {tmp_path}/two.py defines 2 nn.Module classes (A, B): "
                                                       f"name one, or a function that builds the network, "
                                                       f"{tmp_path}/two.py:Name\n")


def test_the_command_runs_as_a_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers.check", f"{NETS}:HardCodedView"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "none: view flattens the 5x5 map into features" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "helpers.check", f"{NETS}:Net", "--input", "64x64"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'64x64' is not CxHxW, e.g. 3x32x32" in bad.stderr
