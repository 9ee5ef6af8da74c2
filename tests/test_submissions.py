"""What students hand in, read in this process (fast): which network a notebook trains and how it is built, the
accuracy and the device its outputs show, the parameter total it printed, and what cannot be loaded."""
import argparse

import pytest
import torch
from torch import nn

from helpers.models import CIFAR10_MEAN, CIFAR10_STD
from helpers.submissions import load
from helpers.submissions.claims import claimed_accuracies
from helpers.submissions.device_evidence import CPU, GPU, device_evidence
from helpers.submissions.load import LoadError, load_entry, split_target
from helpers.submissions.normalization import parse_normalize
from helpers.submissions.notebook_cells import read_cells
from helpers.submissions.printed_totals import summary_count, total_note
from tests.grading_notebooks import NET, SMALL, TEST_LOG, TRAINING, cell, colab_notebook, write_notebook


def test_a_model_in_a_cell_with_colab_lines_is_built_with_the_notebooks_config(tmp_path):
    loaded = load_entry(colab_notebook(tmp_path / "colab.ipynb"))
    assert loaded.name == "Net" and loaded.model.c1.out_channels == 8 and loaded.cell == 4  # 4th cell, 3rd code
    assert loaded.notes == ["built as Net(**config) (cell 4 [3])"]
    claims = claimed_accuracies(read_cells(loaded.file), loaded.cell)
    assert (claims.best.value, claims.final.value) == (85.12, 84.33)
    assert str(claims.best) == '85.12% (cell 5 [4]: "Test set: Average loss: 0.4011, Accuracy: 8512/10000 (85.12%)")'


def test_a_model_imported_from_a_file_beside_and_from_a_package_two_folders_down(tmp_path):
    (tmp_path / "model.py").write_text(NET)
    beside = write_notebook(tmp_path / "beside.ipynb", cell("from model import Net\nmodel = Net(width=4)\n"
                                                            "opt = torch.optim.Adam(model.parameters())", "", 1))
    assert load_entry(beside).model.c1.out_channels == 4
    package = tmp_path / "repo" / "src" / "models"
    package.mkdir(parents=True)
    (package / "s7.py").write_text(NET)
    (package / "blocks.py").write_text("WIDTH = 6\n")
    (package / "__init__.py").write_text("from .blocks import WIDTH\n")
    (tmp_path / "repo" / ".git").mkdir()
    cells = [cell("from src.models.s7 import Net\nfrom src.models import WIDTH\nnet = Net(WIDTH)\n"
                  "summary(net, (3, 32, 32))")]
    assert load_entry(write_notebook(tmp_path / "repo" / "top.ipynb", *cells)).model.c1.out_channels == 6
    nested = write_notebook(tmp_path / "repo" / "notebooks" / "deep" / "s7.ipynb", *cells)  # the repo root found
    assert load_entry(nested).model.c1.out_channels == 6


def test_of_two_networks_the_trained_one_is_taken_and_name_overrides(tmp_path):
    path = write_notebook(tmp_path / "two.ipynb", cell(NET + SMALL, "", 1),
                          cell("first = Net(width=4)\nprint(first)\nmodel = Small()", "", 2),
                          cell("optimizer = torch.optim.SGD(model.parameters(), lr=0.1)", "", 3))
    assert load_entry(path).name == "Small"
    chosen = load_entry(f"{path}:Net")  # built with the arguments the notebook gives it
    assert chosen.name == "Net" and chosen.model.c1.out_channels == 4
    renamed = write_notebook(tmp_path / "again.ipynb", cell(NET + SMALL, "", 1), cell("model = Small()", "", 2),
                             cell("model = Net(width=2)", "", 3), cell(TRAINING, TEST_LOG, 4))
    assert load_entry(renamed).model.c1.out_channels == 2  # the variable's latest binding is the one trained


def test_a_model_cell_after_the_training_cell_and_cells_run_out_of_order(tmp_path):
    ran_first = write_notebook(tmp_path / "after.ipynb", cell(TRAINING, TEST_LOG, 3), cell(NET, "", 1),
                               cell("model = Net(width=5)\nfirst = Net(width=3)", "", 2))
    assert load_entry(ran_first).model.c1.out_channels == 5
    never_ran = write_notebook(tmp_path / "unrun.ipynb", cell(TRAINING), cell(NET),
                               cell("model = Net(width=5)\nfirst = Net(width=3)"))
    assert load_entry(never_ran).model.c1.out_channels == 5  # the use above binds to the model made below
    redefined = NET.replace("width=8", "width=12")
    out_of_order = write_notebook(tmp_path / "order.ipynb", cell(redefined, "", 6), cell(NET, "", 2),
                                  cell("model = Net()\nmodel.train()", "", 7))
    assert load_entry(out_of_order).model.c1.out_channels == 12  # the definition that ran last


def test_a_constructor_that_calls_cuda_is_checked_on_the_cpu_and_the_row_says_so(tmp_path):
    source = NET.replace("self.fc = nn.Linear(16, 10)", "self.fc = nn.Linear(16, 10).cuda()")
    path = write_notebook(tmp_path / "cuda.ipynb", cell(source + "model = Net()\nmodel.train()", "", 1))
    loaded = load_entry(path)
    assert loaded.model.fc.weight.device.type == "cpu"
    assert "the constructor called .cuda(): mapped to the CPU (no GPU here)" in loaded.notes
    assert nn.Module.cuda is not None and "cuda" not in vars(torch.Tensor)  # restored after the build


@pytest.mark.parametrize("printed, best, final", [
    (TEST_LOG, 85.12, 84.33),
    ("Accuracy: 80.71\nAccuracy: 79.5\n", 80.71, 79.5),
    ("epoch 1 train acc: 90.1000 test acc: 85.5500\nepoch 2 train acc: 91.2 test acc: 84.0000\n", 85.55, 84.0),
    ("Test Accuracy : 84.51\n", 84.51, 84.51),
    ("Test set: Average loss: 0.6, Accuracy: 8200/10000 (82%)\n"
     "Accuracy of the network on the 10000 test images: 66 %\n", 82, 66),
    ("Epoch 3: 100%|##########| 79/79 [00:02<00:00, 30.1it/s, test_acc=70.2]\r"
     "Epoch 3: 100%|##########| 79/79 [00:03<00:00, 29.9it/s, test_acc=81.7]\n", 81.7, 81.7),
    ("loss: 0.41 - accuracy: 0.9012 - val_loss: 0.52 - val_accuracy: 0.8512\n", 85.12, 85.12),
])
def test_each_printed_form_of_a_test_accuracy(tmp_path, printed, best, final):
    path = write_notebook(tmp_path / "log.ipynb", cell("train_and_test()", printed, 1))
    claims = claimed_accuracies(read_cells(path))
    assert (claims.best.value, claims.final.value) == (best, final)


def test_training_accuracies_per_class_lines_and_means_are_not_test_accuracies(tmp_path):
    printed = ("Loss=0.51 Batch_id=390 Accuracy=88.33: 100%|##########| 391/391\n"
               "Train set: Average loss: 0.3, Accuracy: 45000/50000 (90.00%)\n"
               "Accuracy of car : 100 %\ncat : 62 %\n"
               "Mean test accuracy over the last 5 epochs: 83.2\nAverage accuracy across epochs: 81\n")
    path = write_notebook(tmp_path / "noise.ipynb", cell("run()", printed, 1))
    assert claimed_accuracies(read_cells(path)).best is None
    path = write_notebook(tmp_path / "both.ipynb", cell("run()", printed + "Accuracy: 77.5\n", 1))
    assert claimed_accuracies(read_cells(path)).best.value == 77.5  # unnamed counts when no line names a test


def test_the_device_row_reads_the_outputs_and_quotes_code_as_intent(tmp_path):
    code = "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')\nprint(device)"
    cases = {"cuda\n": GPU, "Tesla T4\n": GPU, "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05 |\n": GPU,
             "cpu\n": CPU, "CUDA Available? False\n": CPU, "Collecting nvidia-cublas-cu12\n": None, "": None}
    for printed, used in cases.items():
        evidence = device_evidence(read_cells(write_notebook(tmp_path / "d.ipynb", cell(code, printed, 1))))
        assert evidence.used == used, printed
        assert evidence.quotes[-1] == ("intent, not use: cell 1 [1]: device = torch.device('cuda' if "
                                       "torch.cuda.is_available() else 'cpu')")
    printed = write_notebook(tmp_path / "d.ipynb", cell("run()", "Using device: cuda:0\n", 2))
    evidence = device_evidence(read_cells(printed))
    assert evidence.text == 'cell 1 [2]: "Using device: cuda:0"'


def test_a_printed_total_that_counts_a_shared_module_twice_is_explained(tmp_path):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x)).mean(dim=(2, 3))

    model = Twice()
    assert summary_count(model, (3, 32, 32)) == 2 * 84
    path = write_notebook(tmp_path / "p.ipynb", cell("summary(model, (3, 32, 32))", "Total params: 168\n", 3))
    assert total_note(read_cells(path), model, (3, 32, 32)) == (
        "printed 168 (cell 1 [3]); the network has 84: torchsummary counts a module called twice twice")
    path = write_notebook(tmp_path / "q.ipynb", cell("summary(model)", "Total params: 84\n", 3))
    assert total_note(read_cells(path), model, (3, 32, 32)) is None


def test_a_path_with_colons_is_split_at_the_right_colon():
    assert split_target("dir:with:colons/net.py") == (load.Path("dir:with:colons/net.py"), "")
    assert split_target("dir:with:colons/net.py:Net") == (load.Path("dir:with:colons/net.py"), "Net")
    assert split_target("a:b/nb.ipynb:build") == (load.Path("a:b/nb.ipynb"), "build")


def test_a_file_in_a_folder_with_colons_loads(tmp_path):
    folder = tmp_path / "dir:with:colons"
    folder.mkdir()
    (folder / "net.py").write_text(NET)
    assert load_entry(str(folder / "net.py")).name == "Net"


@pytest.mark.parametrize("text, stats", [("cifar", (CIFAR10_MEAN, CIFAR10_STD)), ("none", None),
                                         ("0.5,0.5,0.5/0.25,0.25,0.25", ((0.5,) * 3, (0.25,) * 3))])
def test_normalize_texts(text, stats):
    assert parse_normalize(text) == stats


@pytest.mark.parametrize("text", ["0.5,0.5/0.2", "0.5/0", "a,b,c/1,1,1", "0.5,0.5,0.5"])
def test_normalize_texts_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not cifar, none, or means/stds"):
        parse_normalize(text)


def load_error(target) -> str:
    with pytest.raises(LoadError) as caught:
        load_entry(str(target))
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_what_a_notebook_cannot_give_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert load_error(tmp_path / "broken.ipynb").startswith(f"{tmp_path}/broken.ipynb is not a notebook that can be "
                                                              f"read: ")
    syntax = write_notebook(tmp_path / "syntax.ipynb", cell("class Net(nn.Module:\n    pass", "", 1),
                            cell("model = Net()\nmodel.train()", "", 2))
    assert load_error(syntax) == (f"{syntax} defines 0 nn.Module classes (none): name one, or a function that builds "
                                  f"the network, {syntax}:Name; it trains none that this checker can find (cell 1 [1]: "
                                  f"SyntaxError: invalid syntax (line 1))")
    missing = write_notebook(tmp_path / "missing.ipynb", cell("from nowhere_module import Net\nmodel = Net()\n"
                                                             "model.train()", "", 1))
    assert "(cell 1 [1]: ModuleNotFoundError: No module named 'nowhere_module')" in load_error(missing)
    scripted = tmp_path / "jit.py"
    scripted.write_text(NET + "def build():\n    return torch.jit.script(Net())\n")
    assert load_error(f"{scripted}:build") == ("build() returned a TorchScript module, which hides the layers the "
                                               "rules read: pass the Python module (the nn.Module before "
                                               "torch.jit.script or trace)")
    monkeypatch.setattr(load, "ABSURD_PARAMS", 1000)
    assert load_error(colab_notebook(tmp_path / "big.ipynb")) == (
        "Net(**config) has 7,578 parameters, over the 1,000 this checker traces (the rule allows fewer than "
        "1,000,000): refused before any copy")
