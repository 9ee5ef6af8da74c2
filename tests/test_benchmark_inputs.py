"""The benchmark scripts' bad input, found by trying to break them: one error line, no report left to block a retry,
and quick models checked on the test images their figure counts. In-process, no training."""
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from helpers.checkpoints import save_checkpoint
from helpers.data import DatasetError
from helpers.loop import seed_everything, train
from helpers.models import S7Net
from helpers.recipes import Recipe
from tests.conftest import exits_with

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import time_to_accuracy  # noqa: E402
import verify_checkpoints  # noqa: E402


@pytest.mark.parametrize("override, message", [
    ("epochs=-1", "--set: epochs must be a finite number above 0, not -1.0"),
    ("epochs=inf", "--set: epochs must be a finite number above 0, not inf"),
    ("precision=fp17", "--set: unknown precision 'fp17'"),
    ("translate=-5", "--set: translate must be a whole number of pixels from 0 to 31, not -5"),
    ("momentum=-1", "--set: momentum must be a number from 0 up to, but not including, 1, not -1.0"),
    ("label_smoothing=2", "--set: label_smoothing must be a number from 0 up to, but not including, 1, not 2.0"),
    ("warmup=nan", "--set: warmup must be a fraction from 0 to 1, not nan"),
    ("warmup=inf", "--set: warmup must be a fraction from 0 to 1, not inf"),
    ("batch_size=0", "--set: batch_size must be a whole number above 0, not 0"),
    ("bias_lr_scale=0", "--set: bias_lr_scale must be a finite number above 0, not 0.0"),
    ("weight_decay=-1", "--set: weight_decay must be a finite number from 0 up, not -1.0"),
    ("lr=-0.1", "--set: lr must be a finite number above 0, not -0.1"),
    ("momentum=0", "--set: nesterov needs a momentum above 0"),
])
def test_a_recipe_change_that_no_recipe_takes_is_one_line(capsys, monkeypatch, override, message):
    monkeypatch.setattr(time_to_accuracy, "load_cifar10", lambda root: pytest.fail("loaded the data first"))
    assert message in exits_with(time_to_accuracy.main, ["--quick", "--set", override], capsys)


@pytest.mark.parametrize("field, value", [("epochs", True), ("batch_size", 64.0), ("lr", "0.1"), ("flip", 1),
                                          ("muon_lr", float("inf")), ("warmup", 1.5), ("compile", "false")])
def test_every_recipe_field_refuses_a_value_out_of_its_range_or_kind(field, value):
    """What a file read back or a caller in Python passes is checked as strictly as --set (which converts kinds)."""
    with pytest.raises(ValueError, match=f"^{field} must be .*, not {re.escape(repr(value))}$"):
        Recipe(**{field: value})


def test_a_run_that_fails_loading_the_data_leaves_no_report_to_block_the_retry(tmp_path, capsys, monkeypatch):
    def no_data(root):
        raise DatasetError("CIFAR-10 not found in nowhere")

    monkeypatch.setattr(time_to_accuracy, "load_cifar10", no_data)
    monkeypatch.setattr(time_to_accuracy, "keep_freed_memory", lambda: None)  # the allocator of the test process
    for _ in range(2):  # the retry meets the same error, not "already holds report.jsonl"
        assert "CIFAR-10 not found" in exits_with(time_to_accuracy.main, ["--quick", "--out", str(tmp_path)], capsys)
        assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_the_benchmark_is_one_line_and_status_130(tmp_path):
    # Python leaves SIGINT ignored when its parent ignored it (a background job): the child sets Ctrl-C's handler.
    script = ("import os, signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "sys.path.insert(0, 'benchmarks')\nimport time_to_accuracy\n"
              "def measure(args):\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(30)\n"
              f"time_to_accuracy.measure = measure\ntime_to_accuracy.main(['--quick', '--out', {str(tmp_path)!r}])")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr == f"python benchmarks/time_to_accuracy.py: interrupted; the seed in progress is lost, each " \
                            f"seed printed above is complete and in {tmp_path / 'report.jsonl'}\n"


@pytest.mark.parametrize("record, line", [
    ({"checkpoint": "seed0.pt", "test_acc_plain": 10.0}, 1),
    ({"checkpoint": 7, "test_acc": 10.0, "test_acc_plain": 10.0}, 1),
    ({"checkpoint": "seed0.pt", "test_acc": "10", "test_acc_plain": 10.0}, 1),
])
def test_a_report_line_that_is_not_the_benchmarks_is_one_line(tmp_path, capsys, record, line):
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps(record) + "\n" + json.dumps({"summary": "fast"}) + "\n")
    err = exits_with(verify_checkpoints.main, [str(tmp_path / "seed0.pt"), "--report", str(report)], capsys)
    assert f"line {line} of the report {report} is not the benchmark's" in err


def test_a_quick_model_is_checked_on_the_test_images_its_accuracy_counts(tmp_path, real_data, real_data_root, capsys):
    images, labels = verify_checkpoints.official_test_set(real_data_root)
    model = S7Net((8, 16, 32, 48))  # trained for a moment: an untrained one is 10% right on any images
    train(model, real_data.subset(512, 1), Recipe(epochs=1, batch_size=64, precision="fp32"), seed_everything(0),
          torch.device("cpu"), progress=False, evaluate_each_epoch=False)
    path = tmp_path / "seed0.pt"
    save_checkpoint(model, path, recipe=asdict(Recipe(tta="flip")))
    on_1000 = verify_checkpoints.accuracies(torch.load(path, weights_only=True), path, images[:1000], labels[:1000])
    assert on_1000 != verify_checkpoints.accuracies(torch.load(path, weights_only=True), path, images, labels)
    save_checkpoint(model, path, recipe=asdict(Recipe(tta="flip")), test_acc=on_1000[0], test_images=1000)
    verify_checkpoints.main([str(path), "--data", str(real_data_root)])
    assert "matches the accuracy it carries" in capsys.readouterr().out
    torch.save({**torch.load(path, weights_only=True), "test_images": 20000}, path)
    with pytest.raises(SystemExit):
        verify_checkpoints.main([str(path), "--data", str(real_data_root)])
    assert "says its accuracy counts 20000 test images: there are 10000" in capsys.readouterr().out
