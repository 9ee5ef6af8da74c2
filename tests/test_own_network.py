"""Anyone's network trained by the engine (`--net file.py[:Name]`, train_network): the wrapper, what it refuses,
its checkpoints (resume, predict, verify) and the rule table printed after training."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import train as cli_module
from helpers.checkpoints import CheckpointError, load_model
from helpers.errors import ConfigError
from helpers.models import CIFAR10_MEAN, CIFAR10_STD
from helpers.recipes import NET_RECIPE
from helpers.train import main
from helpers.user_network import UserNetwork, net_recipe, normalization, train_network, user_network
from tests.conftest import exits_with as exits_with_one_line

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "64", "--precision", "fp32", "--epochs", "1"]
STUDENT_FILE = '''
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """Written for transforms.Normalize inputs, with dropout as a module and as a call, ending in log_softmax, as
    students write it."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8))
        self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(), nn.BatchNorm2d(8),
                                nn.Dropout(0.1))
        self.c3 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16))
        self.out = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        x = self.out(F.adaptive_avg_pool2d(F.dropout(self.c4(x), 0.05, self.training), 1))
        return F.log_softmax(x.view(-1, 10), dim=1)
'''


@pytest.fixture
def small(real_data, monkeypatch):
    """The command line on 256 training images: 4 steps an epoch at batch 64."""
    data = real_data.subset(256, 100)
    monkeypatch.setattr(cli_module, "load_cifar10", lambda root: data)
    return data


@pytest.fixture
def student(tmp_path) -> Path:
    path = tmp_path / "model.py"
    path.write_text(STUDENT_FILE)
    return path


def exits_with(argv, capsys, status=2) -> str:
    return exits_with_one_line(main, argv, capsys, status)


def test_the_wrapper_normalises_as_the_network_expects_then_runs_it(student):
    wrapped = user_network(str(student))
    images = torch.rand(4, 3, 32, 32)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
    wrapped.eval()
    assert torch.allclose(wrapped(images), wrapped.net((images - mean) / std), atol=1e-6)
    assert wrapped.model_kwargs["entry"] == "Net" and wrapped.model_kwargs["source"] == str(student.resolve())
    plain = user_network(f"{student}:Net", normalize="none").eval()
    assert torch.equal(plain(images), plain.net(images))
    assert normalization("0.5,0.5,0.5/0.25,0.25,0.25") == ((0.5,) * 3, (0.25,) * 3)


def test_cross_entropy_of_log_probabilities_is_nll_and_the_logits_loss():
    """Why a network ending in log_softmax trains as one ending in logits: log_softmax is idempotent."""
    logits, target = torch.randn(16, 10) * 5, torch.randint(0, 10, (16,))
    log_probs = F.log_softmax(logits, dim=1)
    for smoothing in (0.0, 0.2):
        assert torch.allclose(F.cross_entropy(log_probs, target, label_smoothing=smoothing),
                              F.cross_entropy(logits, target, label_smoothing=smoothing), atol=1e-5)
    assert torch.allclose(F.cross_entropy(log_probs, target), F.nll_loss(log_probs, target), atol=1e-6)


def test_a_plain_module_trains_prints_the_eight_rows_and_its_checkpoint_resumes_and_predicts(student, small,
                                                                                               tmp_path, capsys):
    """Resumed, it ends bit-identical to the run never interrupted: its dropout masks (helpers.dropout) come from the
    generator whose state the checkpoint keeps."""
    out = tmp_path / "run"
    main(["--net", str(student), *FAST, "--epochs", "2", "--stop-after-epoch", "1", "--out", str(out)])
    main(["--resume", str(out / "last.pt")])
    printed = capsys.readouterr().out
    assert "network: Net from" in printed and "normalised first with mean (0.4914, 0.4822, 0.4465)" in printed
    table = printed.split("The rules, checked on the trained network:")[1]
    assert [line.split(":")[0] for line in table.splitlines() if line and not line.startswith(" ")][:8] == \
        ["device", "architecture C1 C2 C3 C4 O", "receptive field", "depthwise-separable conv", "dilated conv",
         "global average pooling", "parameters", "test accuracy"]
    assert "plain on 100 test images" in table and "device: not checked here" in table
    model = load_model(out / "usernetwork.pt")
    assert isinstance(model, UserNetwork) and type(model.net).__name__ == "Net"
    whole = tmp_path / "whole"
    main(["--net", str(student), *FAST, "--epochs", "2", "--out", str(whole)])
    resumed, uninterrupted = load_model(out / "usernetwork.pt"), load_model(whole / "usernetwork.pt")
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), uninterrupted.state_dict().values()))

    image = tmp_path / "cat.png"
    from PIL import Image
    Image.fromarray((small.test_images[0].permute(1, 2, 0).numpy())).save(image)
    predicted = subprocess.run([sys.executable, "-m", "helpers.predict", str(image), "--weights",
                                str(out / "usernetwork.pt")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0 and "cat.png" in predicted.stdout, predicted.stderr

    student.write_text(STUDENT_FILE + "\n# changed\n")
    with pytest.raises(CheckpointError, match=f"the network's file {student.resolve()} changed since"):
        load_model(out / "usernetwork.pt")
    refused = subprocess.run([sys.executable, "-m", "helpers.predict", str(image), "--weights",
                              str(out / "usernetwork.pt")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "changed since" in refused.stderr


BAD_NETWORKS = {
    "tuple": ("return self.fc(x.mean((2, 3))), x", "returns a tuple, not one tensor of scores"),
    "shape": ("return x.mean((2, 3))", "to a torch.float32 tensor of shape (2, 8), not (2, 10)"),
    "fails": ("return self.fc(x.view(-1, 8 * 30 * 30))", "cannot run on a (2, 3, 32, 32) batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_NETWORKS))
def test_a_network_that_cannot_train_is_one_line_and_nothing_is_written(case, small, tmp_path, capsys):
    body, expected = BAD_NETWORKS[case]
    path = tmp_path / "bad.py"
    path.write_text("import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.conv = nn.Conv2d(3, 8, 3)\n"
                    "        self.fc = nn.Linear(8, 10)\n\n"
                    f"    def forward(self, x):\n        x = self.conv(x)\n        {body}\n")
    out = tmp_path / "out"
    assert expected in exits_with(["--net", str(path), *FAST, "--out", str(out)], capsys)
    assert not out.exists()


def test_what_the_net_option_refuses_is_one_line(student, small, tmp_path, capsys):
    no_parameters = tmp_path / "empty.py"
    no_parameters.write_text("import torch.nn as nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n"
                             "        return x.mean((2, 3)).repeat(1, 4)[:, :10]\n")
    out = tmp_path / "out"
    cases = [(["--net", str(no_parameters)], "Net has no trainable parameters"),
             (["--net", str(tmp_path / "missing.py")], "missing.py"),
             (["--net", str(student), "--normalize", "0.5,0.5/1"], "--normalize '0.5,0.5/1'"),
             (["--net", str(student), "--widths", "8", "8", "8", "8"], "--widths sets the channels"),
             (["--normalize", "none"], "--normalize says how a --net network")]
    for argv, expected in cases:
        assert expected in exits_with([*argv, *FAST, "--out", str(out)], capsys)
        assert not out.exists()


def test_net_with_a_preset_takes_its_recipe_not_its_network(student, small, tmp_path, capsys):
    main(["--net", str(student), "--preset", "s7net", "--precision", "fp32", "--quick", "--batch-size", "64",
          "--out", str(tmp_path / "run")])
    saved = torch.load(tmp_path / "run" / "usernetwork.pt", weights_only=True)
    assert saved["preset"] == "s7net" and saved["architecture"] == "UserNetwork"
    assert saved["recipe"]["lr"] == 0.4 and saved["recipe"]["muon_lr"] is None  # s7net's recipe
    assert saved["model_kwargs"]["entry"] == "Net"


def test_train_network_trains_a_notebooks_network_in_memory_and_measures_every_rule(real_data, capsys):
    namespace = {}
    exec(STUDENT_FILE, namespace)  # as a notebook cell defines it
    data = real_data.subset(256, 100)
    first = train_network(namespace["Net"], data, quick=True, batch_size=64, precision="fp32", seed=3,
                          device=torch.device("cpu"))
    again = train_network(namespace["Net"], data, quick=True, batch_size=64, precision="fp32", seed=3,
                          device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert [c.name for c in first.checks][-1] == "test accuracy" and len(first.checks) == 8
    assert first.checks[-1].measured.startswith(f"{first.test_acc:.2f}% plain on 100 test images")
    assert len(first.history) == 1 and first.recipe.muon_lr == NET_RECIPE.muon_lr
    assert "network: Net (built in memory)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="this network was built in memory"):
        UserNetwork(**first.model.model_kwargs)


def test_the_student_recipe_benchmark_trains_epochs_until_its_budget_and_says_it_never_reached_80(real_data):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import student_recipe
    from helpers.runtime.precision import Precision
    model = user_network(str(ROOT / "tests/own_nets.py:DropoutNet"))
    result = student_recipe.train_like_a_student(model, real_data.subset(128, 50),
                                                 Precision.for_run(torch.device("cpu"), "fp32", 64), 0.001, 0)
    assert result["epochs_to_80"] is None and result["seconds_to_80"] is None
    assert len(result["test_acc_plain"]) == len(result["epoch_seconds"]) == 1 and result["epoch_seconds"][0] > 0


def test_a_network_without_a_norm_layer_trains_twice_as_long():
    """Muon's fixed bank norm is harmless only before a norm layer: NoNormNet measured 74.75% in 2 epochs."""
    from tests.own_nets import DropoutNet, NoNormNet
    assert net_recipe(DropoutNet()) == NET_RECIPE
    assert net_recipe(NoNormNet()).epochs == 2 * NET_RECIPE.epochs
    assert net_recipe(nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8))) == NET_RECIPE


def test_a_notebooks_network_is_wrapped_with_its_own_arguments_and_rebuilt_from_the_notebook(tmp_path):
    from helpers.models import build_model
    from tests.grading_notebooks import NET, cell, write_notebook
    training = "cfg = 16\nmodel = Net(width=cfg)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.01)"
    notebook = write_notebook(tmp_path / "s7.ipynb", cell(NET), cell(training))
    wrapped = user_network(str(notebook))
    assert wrapped.model_kwargs["entry"] == "Net" and wrapped.net.c1.out_channels == 16
    rebuilt = build_model("UserNetwork", **wrapped.model_kwargs)
    assert rebuilt.net.c1.out_channels == 16 and rebuilt.model_kwargs == wrapped.model_kwargs
