"""The command line found by trying to break it: its folder checked before any training, no run lost or silently
replaced, Ctrl-C answered with the command that resumes, and inconsistent checkpoints as one error line."""
import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from helpers import models
from helpers import train as cli_module
from helpers.checkpoints import CheckpointError, load_model, load_resumable, save_checkpoint
from helpers.models import S7Net
from helpers import run_folder as runs
from helpers.train import main
from tests.conftest import exits_with as exits_with_one_line

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--widths", "8", "16", "32", "48", "--batch-size", "64", "--precision", "fp32"]


@pytest.fixture
def small(real_data, monkeypatch):
    """The command line on 256 training images: 4 steps an epoch."""
    data = real_data.subset(256, 100)
    monkeypatch.setattr(cli_module, "load_cifar10", lambda root: data)
    return data


def exits_with(argv, capsys, status=2) -> str:
    """helpers.train's main ends with one error line (tests.conftest.exits_with)."""
    return exits_with_one_line(main, argv, capsys, status)


def test_quick_composes_with_explicit_epochs_and_batch_size(small, tmp_path):
    main(["--quick", "--epochs", "2", *TINY, "--out", str(tmp_path)])
    record = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2] and record["recipe"]["batch_size"] == 64


def test_the_final_model_is_named_by_its_architecture_and_carries_its_provenance(small, tmp_path):
    main(["--epochs", "1", *TINY, "--seed", "3", "--out", str(tmp_path)])
    saved = torch.load(tmp_path / "s7airnet.pt", weights_only=True)
    assert (saved["architecture"], saved["preset"], saved["seed"], saved["recipe"]["precision"]) == \
        ("S7AirNet", "fast", 3, "fp32")
    assert "architecture" not in saved["recipe"]  # stored once, beside the recipe


def test_runs_get_their_own_folder_by_default(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["--epochs", "1", *TINY, "--seed", "2"])
    assert (tmp_path / "runs" / "fast-seed2" / "s7airnet.pt").is_file()


def test_an_out_that_is_a_file_is_refused_before_training(small, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_module, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    (tmp_path / "taken").write_text("mine")
    err = exits_with(["--out", str(tmp_path / "taken"), *TINY], capsys)
    assert "is a file, not a folder" in err and (tmp_path / "taken").read_text() == "mine"


def test_a_read_only_out_is_refused_before_training(small, tmp_path, capsys, monkeypatch):
    """Root (CI) ignores permission bits, so the write probe is made to fail as it does for a user."""
    monkeypatch.setattr(cli_module, "train", lambda *a, **k: pytest.fail("trained before checking --out"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs.tempfile, "TemporaryFile", read_only)
    assert f"cannot write to {tmp_path} (Permission denied)" in exits_with(["--out", str(tmp_path), *TINY], capsys)


def test_an_unfinished_run_is_refused_then_resumed_or_overwritten_on_request(small, tmp_path, capsys):
    out = str(tmp_path / "run")
    main(["--epochs", "2", *TINY, "--out", out, "--stop-after-epoch", "1"])
    before = (tmp_path / "run" / "last.pt").read_bytes()
    err = exits_with(["--epochs", "2", *TINY, "--out", out], capsys)
    assert "holds an unfinished run" in err and f"--resume {out}/last.pt" in err and "--overwrite" in err
    assert (tmp_path / "run" / "last.pt").read_bytes() == before  # nothing lost
    main(["--epochs", "2", *TINY, "--out", out, "--overwrite"])
    assert load_resumable(tmp_path / "run" / "last.pt")["epoch"] == 2
    err = exits_with(["--epochs", "1", *TINY, "--out", out], capsys)  # a finished run is not replaced unasked
    assert "holds a finished run (s7airnet.pt)" in err and "--overwrite to replace it" in err


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1"])
def test_a_seed_out_of_range_is_one_error(seed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--seed", seed])
    assert exit_info.value.code == 2 and "is not a seed from 0 to 2**63 - 1" in capsys.readouterr().err


def broken(tmp_path, **changes) -> Path:
    """A resumable checkpoint of a real run with some of its parts changed."""
    model = S7Net((8, 16, 32, 48))
    checkpoint = {"architecture": "S7Net", "model_kwargs": model.model_kwargs,
                  "state_dict": model.state_dict(), "recipe": {**asdict(cli_module.resolve("fast").recipe)},
                  "optimizer": {}, "epoch": 1, "step": 2, "history": [{"epoch": 1}], "torch_rng": torch.get_rng_state(),
                  "generator": torch.Generator().get_state(), "train_images": 256, "config": {"seed": 0}}
    for key, value in changes.items():
        checkpoint[key] = value(checkpoint[key]) if callable(value) else value
    torch.save(checkpoint, tmp_path / "last.pt")
    return tmp_path / "last.pt"


@pytest.mark.parametrize("changes, message", [
    ({"architecture": "ResNet"}, "names a network that cannot be built: unknown architecture 'ResNet'"),
    ({"model_kwargs": {"widths": [8, 16, 32, 64], "num_classes": 10, "dilation": 2}},
     "its weights do not fit S7Net"),
    ({"model_kwargs": {"depth": 3}}, "names a network that cannot be built"),
    ({"recipe": lambda recipe: {**recipe, "turbo": True}}, "holds a recipe this version cannot run: unknown recipe "
                                                            "field(s) turbo"),
    ({"recipe": lambda recipe: {**recipe, "batch_size": 0}}, "holds a recipe this version cannot run: batch_size "
                                                              "must be a whole number above 0, not 0"),
    ({"config": {"seed": 2**70}}, "its config holds seed 1180591620717411303424, not a seed from 0 to 2**63 - 1"),
])
def test_inconsistent_checkpoints_are_one_checkpoint_error(tmp_path, capsys, small, changes, message):
    path = broken(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_resumable(path) if changes.keys() & {"recipe", "config"} else load_model(path)
    assert message in exits_with(["--resume", str(path)], capsys)


def test_ctrl_c_says_where_the_last_good_epoch_is_and_how_to_resume(tmp_path, real_data_root):
    """A real SIGINT to a real run, after its first epoch is saved: one line, status 130."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "helpers.train", "--preset", "full", "--quick", "--epochs", "50",
                                "--widths", "8", "16", "16", "16", "--precision", "fp32", "--data",
                                str(real_data_root), "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               # A suite started in the background inherits SIGINT ignored; a terminal's run does not.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    last_line = err.rstrip("\n").split("\n")[-1]  # above it only the progress bar, which tqdm writes to stderr
    assert last_line.startswith("python -m helpers.train: interrupted: epoch ") and "Traceback" not in err
    assert f"is saved in {out / 'last.pt'}; go on with: python -m helpers.train --resume {out / 'last.pt'}" in err
    assert load_resumable(out / "last.pt")["epoch"] >= 1


def test_checkpoints_move_the_optimizer_state_to_the_cpu(tmp_path):
    model = S7Net((8, 16, 32, 48))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    meta_state = {**state, "state": {k: {n: v.to("meta") for n, v in s.items()} for k, s in state["state"].items()}}
    with pytest.raises(NotImplementedError):  # a tensor on another device must be moved, not stored where it is
        save_checkpoint(model, tmp_path / "x.pt", optimizer=meta_state)
    save_checkpoint(model, tmp_path / "y.pt", optimizer=state)
    saved = torch.load(tmp_path / "y.pt", weights_only=True)["optimizer"]["state"]
    assert all(v.device.type == "cpu" for s in saved.values() for v in s.values())


def test_sync_batchnorm_without_a_gpu_is_one_error(small, tmp_path, capsys):
    err = exits_with(["--sync-batchnorm", *TINY, "--epochs", "1", "--device", "cpu", "--out", str(tmp_path)], capsys)
    assert "SyncBatchNorm needs GPUs" in err


# --- found by trying to break it, third round -----------------------------------------------------------------

def test_two_trainings_into_one_folder_at_once_the_second_is_refused(small, tmp_path, capsys):
    """The first holds the folder's lock for as long as it trains (here: the test holds it as that first run would)."""
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / runs.LOCK, "w") as lock:
        fcntl = pytest.importorskip("fcntl")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys)
    assert f"another training is writing to {tmp_path} now" in err and not (tmp_path / "last.pt").exists()
    main(["--epochs", "1", *TINY, "--out", str(tmp_path)])  # the lock goes with its process
    assert (tmp_path / "s7airnet.pt").exists()


def test_resume_checks_that_it_can_write_its_folder_before_training(small, tmp_path, capsys, monkeypatch):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path), "--stop-after-epoch", "1"])
    monkeypatch.setattr(cli_module, "train", lambda *a, **k: pytest.fail("trained before checking the folder"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs.tempfile, "TemporaryFile", read_only)
    assert "cannot write to" in exits_with(["--resume", str(tmp_path / "last.pt")], capsys)


def test_overwrite_keeps_the_old_run_until_the_new_one_has_written_its_own(small, tmp_path, capsys, monkeypatch):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path), "--stop-after-epoch", "1"])
    before = (tmp_path / "last.pt").read_bytes()

    def broken_data(root):
        raise cli_module.DatasetError("data_batch_1.bin has MD5 0000, not the official one")

    monkeypatch.setattr(cli_module, "load_cifar10", broken_data)
    assert "not the official one" in exits_with(["--epochs", "2", *TINY, "--out", str(tmp_path), "--overwrite"],
                                                capsys)
    assert (tmp_path / "last.pt").read_bytes() == before  # still resumable


def test_a_finished_run_of_another_network_is_replaced_only_when_asked_and_then_whole(small, tmp_path, capsys):
    main(["--preset", "s7net", "--epochs", "1", *TINY, "--out", str(tmp_path)])
    err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys)
    assert "holds a finished run (s7net.pt)" in err
    main(["--epochs", "1", *TINY, "--out", str(tmp_path), "--overwrite"])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["history.json", "last.pt", "s7airnet.pt"]  # one run's files, not a mix


def test_ctrl_c_in_the_final_evaluation_keeps_the_finished_run_and_resume_writes_the_model(small, tmp_path, capsys,
                                                                                         monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(cli_module, "evaluate", interrupted)
        err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys, status=130)
    assert "training finished (epoch 1 is saved in" in err and "the final model was not written" in err
    assert "nothing was saved" not in err
    test_acc = main(["--resume", str(tmp_path / "last.pt")])  # nothing left to train: evaluates and saves
    assert (tmp_path / "s7airnet.pt").exists() and 0 <= test_acc <= 100


def test_resume_writes_in_its_own_folder_and_says_to_drop_out(small, tmp_path, capsys):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path / "a"), "--stop-after-epoch", "1"])
    err = exits_with(["--resume", str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "b")], capsys)
    assert "in its own folder: drop --out" in err and not (tmp_path / "b").exists()


def test_printed_commands_can_be_pasted_into_a_shell(small, tmp_path, capsys):
    out = tmp_path / "with space"
    main(["--epochs", "2", *TINY, "--out", str(out), "--stop-after-epoch", "1"])
    hint = capsys.readouterr().out.splitlines()[-1].split("go on with: ")[1]
    assert hint == f"python -m helpers.train --resume '{out / 'last.pt'}'"
    assert shlex.split(hint)[-1] == str(out / "last.pt")


def test_a_last_pt_that_cannot_be_read_is_not_offered_for_resuming(small, tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys)
    assert "holds a last.pt that cannot be resumed" in err and "--resume" not in err


def test_a_last_pt_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    """Opening a FIFO blocks until something writes into it: --resume, and a new run into its folder, refuse it."""
    os.mkfifo(tmp_path / "last.pt")
    for argv in (["--resume", str(tmp_path / "last.pt")], ["--epochs", "1", "--out", str(tmp_path)]):
        result = subprocess.run([sys.executable, "-m", "helpers.train", *argv], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"checkpoint {tmp_path / 'last.pt'} is not a regular file" in result.stderr


@pytest.mark.parametrize("part, change", [
    ("muon", lambda state: {**state, "state": {0: {"momentum_buffer": torch.zeros(3)}}}),
    ("optimizer", lambda state: {**state, "param_groups": state["param_groups"][:1]}),
    ("config", lambda config: ["seed", 0]),
    ("generator", lambda state: state[:10]),
    ("epoch", lambda epoch: 7),
])
def test_a_last_pt_edited_by_hand_is_one_checkpoint_error(small, tmp_path, capsys, part, change):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path), "--stop-after-epoch", "1"])
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    checkpoint[part] = change(checkpoint[part])
    torch.save(checkpoint, tmp_path / "last.pt")
    err = exits_with(["--resume", str(tmp_path / "last.pt")], capsys)
    assert "error: " in err


def test_a_bad_distributed_timeout_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setenv("S7_DIST_TIMEOUT", "abc")
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert "S7_DIST_TIMEOUT must be a positive number of seconds, not 'abc'" in exits_with(["--quick"], capsys)


# --- found by trying to break it, fourth round ----------------------------------------------------------------

def test_resume_into_another_networks_finished_run_keeps_it_unless_overwrite_is_given(small, tmp_path, capsys):
    theirs, mine = tmp_path / "theirs", tmp_path / "mine"
    main(["--preset", "s7net", "--epochs", "1", *TINY, "--out", str(theirs)])
    main(["--epochs", "2", *TINY, "--out", str(mine), "--stop-after-epoch", "1"])
    shutil.copy(mine / "last.pt", theirs / "last.pt")
    model, history = (theirs / "s7net.pt").read_bytes(), (theirs / "history.json").read_bytes()
    err = exits_with(["--resume", str(theirs / "last.pt")], capsys)
    assert "holds a finished run (s7net.pt)" in err and "pass --overwrite to replace it" in err
    assert (theirs / "s7net.pt").read_bytes() == model and (theirs / "history.json").read_bytes() == history
    main(["--resume", str(theirs / "last.pt"), "--overwrite"])  # asked: replaced whole
    assert sorted(p.name for p in theirs.iterdir() if not p.name.startswith(".")) == \
        ["history.json", "last.pt", "s7airnet.pt"]


def test_a_lock_file_that_is_a_link_leaves_its_target_untouched_and_a_folder_there_is_one_line(small, tmp_path,
                                                                                              capsys):
    precious, out = tmp_path / "precious.txt", tmp_path / "run"
    precious.write_text("keep me")
    out.mkdir()
    (out / runs.LOCK).symlink_to(precious)
    err = exits_with(["--epochs", "1", *TINY, "--out", str(out)], capsys)
    assert f"{out / runs.LOCK} is not a plain file that can lock the folder" in err
    assert precious.read_text() == "keep me" and not (out / "last.pt").exists()
    (out / runs.LOCK).unlink()
    (out / runs.LOCK).mkdir()
    assert "is not a plain file that can lock the folder (Is a directory)" in \
        exits_with(["--epochs", "1", *TINY, "--out", str(out)], capsys)


def half_written(failure):
    """A torch.save that writes part of the file, then fails as a full disk or an interruption makes it fail."""
    def save(obj, path):
        Path(path).write_bytes(b"x" * 1000)
        raise failure

    return save


@pytest.mark.parametrize("failure, status, message", [
    (OSError(errno.ENOSPC, "No space left on device"), 2, "(No space left on device); the last.pt written before is "
                                                          "kept"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), 2,
     "(the write stopped short with"),
    (KeyboardInterrupt(), 130, "interrupted: epoch 1 is saved in"),
])
def test_a_checkpoint_write_that_fails_leaves_no_temporary_file_and_one_line(small, tmp_path, capsys, monkeypatch,
                                                                           failure, status, message):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path), "--stop-after-epoch", "1"])
    before = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", half_written(failure))
    err = exits_with(["--resume", str(tmp_path / "last.pt")], capsys, status=status)
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["last.pt"]
    assert (tmp_path / "last.pt").read_bytes() == before


def test_a_full_disk_at_history_json_is_one_line_and_leaves_no_empty_history(small, tmp_path, capsys, monkeypatch):
    write_text = Path.write_text

    def full_disk_for_the_history(path, text, *args, **kwargs):
        if not path.name.startswith("history.json"):
            return write_text(path, text, *args, **kwargs)
        write_text(path, "")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk_for_the_history)
    err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys)
    assert f"cannot write {tmp_path / 'history.json'} (No space left on device)" in err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["last.pt", "s7airnet.pt"]


def test_sigterm_is_answered_as_ctrl_c_is(small, tmp_path, capsys, monkeypatch):
    """What `timeout`, `kill` and batch schedulers send. The test's own handler fails it if the command has none."""
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs meanwhile

    def unhandled(signum, frame):
        pytest.fail("the command left SIGTERM to the default handler, which ends it without a word")

    monkeypatch.setattr(cli_module, "train", terminated)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        err = exits_with(["--epochs", "1", *TINY, "--out", str(tmp_path)], capsys, status=130)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored after the command
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "interrupted: stopped before the first epoch ended; nothing was saved" in err


@pytest.mark.parametrize("name, message", [
    ("cuda", "'cuda': torch sees no CUDA GPU here"),
    ("cuda:7", "'cuda:7': torch sees no CUDA GPU here"),
    ("mps", "'mps': Apple's MPS is not available here"),
    ("xla", "'xla': training runs on cpu, cuda or mps, not xla"),
    ("meta", "'meta': training runs on cpu, cuda or mps, not meta"),
    ("garbage", "'garbage' is not a device: cpu, cuda, cuda:N or mps"),
    ("cuda:-1", "'cuda:-1' is not a device: cpu, cuda, cuda:N or mps"),
])
def test_a_device_this_machine_lacks_is_one_error_line_before_the_data_loads(tmp_path, capsys, monkeypatch, name,
                                                                             message):
    if name.startswith("cuda") and torch.cuda.is_available() or name == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {name}")
    monkeypatch.setattr(cli_module, "load_cifar10", lambda root: pytest.fail("loaded the data first"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", name, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == f"python -m helpers.train: error: argument --device: {message}"
    assert not tmp_path.joinpath("last.pt").exists()


def test_widths_too_many_to_build_are_one_line_with_the_parameters_they_would_have(small, tmp_path, capsys):
    err = exits_with(["--widths", "1000000", "64", "64", "64", "--out", str(tmp_path)], capsys)
    assert "S7AirNet with {'widths': [1000000, 64, 64, 64]} would have 9,000,796,047,672 parameters (36,003 GB as " \
           "fp32): more than 100,000,000 are not built here" in err


def test_a_data_root_that_is_a_symlink_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    err = exits_with(["--data", str(tmp_path / "a"), *TINY, "--out", str(tmp_path / "out")], capsys)
    assert f"the data root {tmp_path / 'a'} cannot be followed" in err


@pytest.mark.parametrize("part, value, message", [
    ("step", -5, "step -5 after epoch 1 of 256 images at batch 64"),
    ("step", 5, "step 5 after epoch 1 of 256 images at batch 64"),
    ("config", {"seed": "0"}, "its config holds seed '0'"),
    ("config", {"seed": 1.5, "quick": 1}, "its config holds seed 1.5, quick 1"),
])
def test_a_last_pt_whose_step_or_config_was_edited_is_refused_before_training(small, tmp_path, capsys, part, value,
                                                                              message):
    main(["--epochs", "2", *TINY, "--out", str(tmp_path), "--stop-after-epoch", "1"])
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    torch.save({**checkpoint, part: value}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="is not a run this version can resume"):
        load_resumable(tmp_path / "last.pt")
    assert message in exits_with(["--resume", str(tmp_path / "last.pt")], capsys)


def test_the_final_model_says_how_many_test_images_its_accuracy_counts(small, tmp_path):
    main(["--quick", "--epochs", "1", *TINY, "--out", str(tmp_path)])
    saved = torch.load(tmp_path / "s7airnet.pt", weights_only=True)
    assert saved["test_images"] == len(small.test_images) == 100  # the first 100: what verify_checkpoints uses


def test_a_distributed_timeout_too_large_for_the_clock_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setenv("S7_DIST_TIMEOUT", "99999999999999999999")
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert "S7_DIST_TIMEOUT must be a positive number of seconds, not '99999999999999999999' (at most 31,536,000, " \
           "a year)" in exits_with(["--quick"], capsys)


@pytest.mark.parametrize("preset", ["fast", "full", "s7net", "tutorial"])
def test_the_parameters_counted_before_building_are_those_the_built_network_has(preset):
    run = cli_module.resolve(preset)
    network = models.ARCHITECTURES[run.architecture]
    assert models.planned_parameters(network, run.model_kwargs) == \
        models.count_parameters(models.build_model(run.architecture, **run.model_kwargs))
