"""Bad input ends in one clear message; a run resumes exactly; a diverging run stops and keeps its last good epoch."""
import io
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from helpers import download as download_module
from helpers import train as cli_module
from helpers.checkpoints import (
    RESUME_KEYS,
    CheckpointError,
    load_checkpoint,
    load_model,
    load_resumable,
    save_checkpoint,
)
from helpers.data import BINARY_FOLDER, PYTHON_FOLDER
from helpers.errors import ConfigError
from helpers.loop import NonFiniteLossError, seed_everything, train
from helpers.models import S7Net
from helpers.recipes import Recipe
from helpers.train import main
from tests.conftest import free_port, write_binary_layout

TINY = ["8", "16", "32", "48"]  # S7Net widths small enough for a few CPU steps in a test
RECIPE = Recipe(epochs=3, batch_size=64, precision="fp32")  # 4 steps an epoch on the 256 images below


@pytest.fixture(scope="module")
def small(real_data):
    return real_data.subset(256, 100)


def tiny_model():
    return S7Net(tuple(map(int, TINY)))


def start():
    """The model and batch generator of a fresh run, as the command line makes them."""
    generator = seed_everything(0)
    return tiny_model(), generator


def train_small(data, tmp_path, **options):
    model, generator = start()
    history = train(model, data, RECIPE, generator, torch.device("cpu"), progress=False,
                    checkpoint_path=tmp_path / "last.pt", **options)
    return model, history


# --- resumable checkpoints ----------------------------------------------------------------------------------

def test_resumable_checkpoint_holds_the_whole_state_as_plain_values(small, tmp_path):
    model, history = train_small(small, tmp_path, stop_after_epoch=1, config={"seed": 0})
    assert len(history) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # written atomically: no temporary left
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)  # plain values only: no code unpickled
    assert set(RESUME_KEYS) <= checkpoint.keys()
    assert (checkpoint["epoch"], checkpoint["step"], checkpoint["config"]) == (1, 4, {"seed": 0})
    assert checkpoint["recipe"] == vars(RECIPE) and checkpoint["history"] == history
    assert len(checkpoint["optimizer"]["state"]) == len(list(model.parameters()))  # momentum buffers
    loaded = load_model(tmp_path / "last.pt")  # the model-only contract holds for it too
    for name, weight in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name


def test_resuming_with_another_recipe_is_refused(small, tmp_path):
    train_small(small, tmp_path, stop_after_epoch=1)
    model, generator = start()
    with pytest.raises(ConfigError, match="the checkpoint was trained with Recipe.* resume with its own recipe"):
        train(model, small, replace(RECIPE, lr=RECIPE.lr / 2), generator, torch.device("cpu"), progress=False,
              resume_from=load_resumable(tmp_path / "last.pt"))


def test_command_line_resumes_to_exactly_the_weights_of_an_uninterrupted_run(small, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_module, "load_cifar10", lambda root: small)
    # On the CPU, where training is bit-exact (cuDNN's is not), also on a machine with a GPU.
    run = ["--epochs", "2", "--batch-size", "64", "--widths", *TINY, "--seed", "1", "--precision", "fp32", "--device",
           "cpu"]
    assert main([*run, "--stop-after-epoch", "1", "--out", str(tmp_path / "a")]) is None
    assert f"stopped after epoch 1 of 2; go on with: python -m helpers.train --resume {tmp_path / 'a' / 'last.pt'}" \
        in capsys.readouterr().out
    assert not (tmp_path / "a" / "s7airnet.pt").exists()
    first_epoch = load_resumable(tmp_path / "a" / "last.pt")["history"]
    main(["--resume", str(tmp_path / "a" / "last.pt"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "epoch  2 " in out and "epoch  1 " not in out  # it went on, it did not start again
    assert "resuming in" not in out  # in its own precision
    main([*run, "--out", str(tmp_path / "b")])
    resumed, whole = (load_checkpoint(tmp_path / folder / "s7airnet.pt")["state_dict"] for folder in "ab")
    for name, weight in whole.items():
        assert torch.equal(resumed[name], weight), name
    record = json.loads((tmp_path / "a" / "history.json").read_text())
    assert record["history"][:1] == first_epoch and len(record["history"]) == 2 and record["seed"] == 1


def test_a_run_may_go_on_in_another_precision_and_says_what_that_changes(small, tmp_path, monkeypatch, capsys):
    """A run split across Colab sessions may land on a GPU without bf16: it goes on in the precision asked for."""
    monkeypatch.setattr(cli_module, "load_cifar10", lambda root: small)
    run = ["--epochs", "2", "--batch-size", "64", "--widths", *TINY, "--device", "cpu"]
    main([*run, "--precision", "bf16", "--stop-after-epoch", "1", "--out", str(tmp_path)])
    main(["--resume", str(tmp_path / "last.pt"), "--precision", "fp16", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "resuming in fp16, not bf16 as the run began" in out and "will not equal an uninterrupted run's" in out
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    assert [h["precision"] for h in history] == ["bf16", "fp16"]
    assert load_resumable(tmp_path / "last.pt")["recipe"]["precision"] == "fp16"


def saved_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a checkpoint\n", "is not a checkpoint that loads safely"),
    (saved_bytes({"model_kwargs": {}, "state_dict": {}})[:100], "is not a checkpoint that loads safely"),
    (saved_bytes({"model_kwargs": {}, "state_dict": {}, "code": ConfigError("x")}), "never unpickled"),
    (saved_bytes({"weights": {}}), "is not a checkpoint of an S7 network"),
])
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "s7net.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


# --- a non-finite loss --------------------------------------------------------------------------------------

def test_non_finite_loss_names_the_step_and_leaves_the_last_good_checkpoint(small, tmp_path):
    model, generator = start()
    calls = []

    def poison_step_7(module, inputs, output):
        calls.append(module.training)
        return output * float("nan") if sum(calls) == 7 else output

    model.output.register_forward_hook(poison_step_7)
    train(model, small, RECIPE, generator, torch.device("cpu"), progress=False,
          checkpoint_path=tmp_path / "last.pt", stop_after_epoch=1)
    good = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(NonFiniteLossError, match=r"at step 7 of 12, in epoch 2: training stopped\. .*last\.pt "
                                                 r"still holds the last good epoch") as error:
        train(model, small, RECIPE, generator, torch.device("cpu"), progress=False,
              checkpoint_path=tmp_path / "last.pt", resume_from=load_resumable(tmp_path / "last.pt"))
    assert (error.value.step, error.value.epoch) == (7, 2)
    assert (tmp_path / "last.pt").read_bytes() == good


def test_an_exploding_learning_rate_stops_training(small):
    model, generator = start()
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ of 12, in epoch 1"):
        train(model, small, Recipe(epochs=3, batch_size=64, lr=1e6, precision="fp32"), generator, torch.device("cpu"),
              progress=False)


# --- the command line's errors: status 2 and a message, never a traceback ------------------------------------

def offline_without_data(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "ARCHIVE_URL", f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz")
    monkeypatch.setattr(download_module, "RETRY_WAIT_S", 0)
    return ["--data", str(tmp_path / "nowhere")]


def truncated_batch_file(tmp_path, monkeypatch):
    write_binary_layout(tmp_path, per_file=2)
    return ["--data", str(tmp_path)]


def weights_only_checkpoint(tmp_path, monkeypatch):
    return ["--resume", str(save_checkpoint(tiny_model(), tmp_path / "s7net.pt"))]


@pytest.mark.parametrize("make_args, expected", [
    (offline_without_data, ["CIFAR-10 not found in", BINARY_FOLDER, PYTHON_FOLDER, "download failed too"]),
    (truncated_batch_file, ["data_batch_1.bin has 6,146 bytes", "truncated"]),
    (lambda tmp_path, _: ["--preset", "s7net", "--check", "--widths", "64", "128", "256", "512"],
     ["the model fails the S7 checks: parameters is 4,003,530, required < 1,000,000"]),
    (lambda tmp_path, _: ["--resume", str(tmp_path / "gone.pt")], ["gone.pt does not exist"]),
    (weights_only_checkpoint, ["holds weights only, not a run to resume", "last.pt"]),
    (lambda tmp_path, _: ["--resume", str(tmp_path / "last.pt"), "--epochs", "3"], ["drop --epochs"]),
    (lambda tmp_path, _: ["--epochs", "0"], ["0 is not a positive number"]),
])
def test_command_line_mistakes_exit_with_status_2_and_say_what_is_wrong(tmp_path, monkeypatch, capsys, make_args,
                                                                        expected):
    args = make_args(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exit_info:  # a resumed run writes in its own folder: no --out
        main([*args, *([] if "--resume" in args else ["--out", str(tmp_path / "out")])])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err
    for text in expected:
        assert text in err


def test_command_line_prints_a_failed_check_as_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers.train", "--preset", "s7net", "--check", "--widths", "64",
                             "128", "256", "512",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("python -m helpers.train: error: the model fails the S7 checks")
    assert result.stderr.count("\n") == 1
