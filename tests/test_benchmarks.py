"""The benchmark scripts run end to end (quick mode) and their checkpoints reproduce the reported accuracy."""
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from helpers.checkpoints import save_checkpoint
from helpers.models import S7Net, build_model
from helpers.recipes import PRESETS, QUICK_TRAIN_IMAGES, Recipe, resolve
from helpers.zoo import count_macs

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args) -> str:
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("preset, architecture, params", [("fast", "S7AirNet", 291_736), ("full", "S7AirNet", 928_824),
                                                          ("s7net", "S7Net", 671_722)])
def test_time_to_accuracy_reports_every_field_and_saves_what_it_evaluated(tmp_path, real_data_root, preset,
                                                                          architecture, params):
    seeds, save = ("--seeds", "--save") if preset == "s7net" else ("--seed", "--out")  # the contract's names too
    out = run_script("benchmarks/time_to_accuracy.py", "--preset", preset, "--quick", "--epochs", "2",
                     seeds, "0", "1", "--device", "cpu", "--data", real_data_root, save, tmp_path)
    records = [json.loads(line) for line in out.splitlines()]
    runs, summary = records[:-1], records[-1]
    assert [r["seed"] for r in runs] == [0, 1]
    for r in runs:
        assert (r["architecture"], r["params"], r["epochs"], r["device"]) == (architecture, params, 2, "cpu")
        assert r["train_seconds"] > 0 and r["images_per_second"] > 0 and r["precision"] in ("fp32", "bf16")
        # Against the machine's own limit: the work done, and the compute the machine offered meanwhile.
        recipe = resolve(preset, quick=True, epochs=2).recipe  # quick mode's batch: at most 256
        epoch_images = [QUICK_TRAIN_IMAGES // recipe.batch_size * recipe.batch_size] * recipe.epochs
        # full's batch of 250 leaves 48 of 2,048 images over at the end of each epoch (drop_last)
        assert epoch_images == {"fast": [2048, 2048], "full": [2000, 2000], "s7net": [2048, 2048]}[preset]
        images = sum(epoch_images)
        network = build_model(architecture, **PRESETS[preset].model_kwargs)
        assert r["train_tflop"] == round(6 * count_macs(network, (3, 32, 32)) * images / 1e12, 3)
        assert len(r["peak_probes"]) == 2 and r["peak_gflops"] == max(r["peak_probes"])  # before and after training
        assert r["peak_gflops"] > 1 and r["peak_tflop_s"] == pytest.approx(r["train_seconds"] * r["peak_gflops"] / 1000,
                                                                           abs=0.01)
        assert r["efficiency"] == pytest.approx(r["train_tflop"] / r["peak_tflop_s"], rel=0.02)
        assert 0 <= r["test_acc_plain"] <= 100 and 0 <= r["test_acc"] <= 100
        assert Path(r["checkpoint"]) == tmp_path / f"seed{r['seed']}.pt"
    assert summary["mean_test_acc"] == round(sum(r["test_acc"] for r in runs) / 2, 2)
    assert summary["max_train_seconds"] == max(r["train_seconds"] for r in runs)

    # The saved models, rebuilt and evaluated without helpers' evaluation code, give the reported numbers
    # (quick mode evaluates the first 1,000 test images).
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from verify_checkpoints import accuracies, official_test_set

    images, labels = official_test_set(real_data_root)
    for r in runs:
        path = Path(r["checkpoint"])
        assert accuracies(torch.load(path, weights_only=True), path, images[:1000], labels[:1000]) == \
            [r["test_acc"], r["test_acc_plain"]]


def test_a_bad_value_is_one_error_line_and_status_2(real_data_root):
    result = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--quick", "--batch-size", "4096",
                             "--data", str(real_data_root)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == ("python benchmarks/time_to_accuracy.py: error: batch size 4096 is larger than the 2048 "
                             "training images: lower it or use more data\n")


def test_verify_checkpoints_fails_when_a_checkpoint_differs_from_the_report_or_is_missing(tmp_path, real_data_root):
    torch.manual_seed(0)
    path = save_checkpoint(S7Net((8, 16, 32, 48)).eval(), tmp_path / "seed0.pt", recipe=asdict(Recipe(tta="flip")))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from verify_checkpoints import accuracies, official_test_set

    tta, plain = accuracies(torch.load(path, weights_only=True), path, *official_test_set(real_data_root))

    def verify(checkpoint_name: str, test_acc: float):
        report = tmp_path / "report.jsonl"
        report.write_text(json.dumps({"checkpoint": f"runs/bench/{checkpoint_name}", "test_acc": test_acc,
                                      "test_acc_plain": plain}) + "\n")
        return subprocess.run([sys.executable, "benchmarks/verify_checkpoints.py", str(path), "--data",
                               str(real_data_root), "--report", str(report)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    matches = verify("seed0.pt", tta)
    assert matches.returncode == 0 and "matches the report" in matches.stdout, matches.stderr
    differs = verify("seed0.pt", round(tta + 0.01, 2))
    assert differs.returncode == 1 and "DIFFERS from the report" in differs.stdout
    assert "1 of 1 checkpoints do not match the report" in differs.stderr
    missing = verify("seed1.pt", tta)
    assert missing.returncode == 1 and "is not in the report" in missing.stdout
