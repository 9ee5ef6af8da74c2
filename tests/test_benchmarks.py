"""The benchmark scripts run end to end (quick mode) and their checkpoints reproduce the reported accuracy."""
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from helpers.checkpoints import save_checkpoint
from helpers.models import S7Net, build_model, count_macs
from helpers.muon import newton_schulz_flops
from helpers.optimizers import muon_banks
from helpers.recipes import PRESETS, QUICK_TRAIN_IMAGES, Recipe, resolve
from helpers.runtime.device import processor_name
from helpers.runtime.precision import decide_precision

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
sys.path.insert(0, str(ROOT / "benchmarks"))
from time_to_accuracy import code_version  # noqa: E402


def run_script(*args) -> str:
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("preset, architecture, params", [("fast", "S7AirNet", 291_736), ("full", "S7AirNet", 928_824),
                                                          ("s7net", "S7Net", 671_722)])
def test_time_to_accuracy_reports_every_field_and_saves_what_it_evaluated(tmp_path, real_data_root, preset,
                                                                          architecture, params):
    out = run_script("benchmarks/time_to_accuracy.py", "--preset", preset, "--quick", "--epochs", "2",
                     "--seed", "0", "1", "--device", "cpu", "--data", real_data_root, "--out", tmp_path)
    records = [json.loads(line) for line in out.splitlines()]
    runs, summary = records[:-1], records[-1]
    assert [r["seed"] for r in runs] == [0, 1]
    recipe, _ = decide_precision(resolve(preset, quick=True, epochs=2).recipe, CPU)
    for r in runs:
        assert (r["architecture"], r["params"], r["epochs"], r["device"]) == (architecture, params, 2, "cpu")
        assert r["train_seconds"] > 0 and r["images_per_second"] > 0 and r["precision"] == recipe.precision
        # What ran: the resolved recipe, the network's arguments, the code and the torch that ran it.
        assert r["recipe"] == asdict(recipe) and r["torch"] == torch.__version__
        assert r["precision_rule"] == decide_precision(resolve(preset, quick=True, epochs=2).recipe, CPU)[1]
        assert r["model_kwargs"] == build_model(architecture, **PRESETS[preset].model_kwargs).model_kwargs
        assert r["commit"] == code_version()["commit"] and isinstance(r["dirty"], bool)
        # Against the machine's own limit: the work done, and the compute the machine offered meanwhile.
        epoch_images = [QUICK_TRAIN_IMAGES // recipe.batch_size * recipe.batch_size] * recipe.epochs
        # full's batch of 250 leaves 48 of 2,048 images over at the end of each epoch (drop_last)
        assert epoch_images == {"fast": [2048, 2048], "full": [2000, 2000], "s7net": [2048, 2048]}[preset]
        images = sum(epoch_images)
        network = build_model(architecture, **PRESETS[preset].model_kwargs)
        # Muon's orthogonalisation counted too: its FLOPs per step times the steps (none for s7net, all SGD).
        muon = sum(newton_schulz_flops(p.shape) for p in muon_banks(network, recipe)) * images / recipe.batch_size
        assert r["muon_tflop"] == round(muon / 1e12, 3) and (r["muon_tflop"] > 0) == (preset != "s7net")
        assert r["train_tflop"] == round((6 * count_macs(network, (3, 32, 32)) * images + muon) / 1e12, 3)
        assert r["warmup_seconds"] > 0  # an untimed run of its own, never an estimate that can go negative
        assert len(r["peak_probes"]) == 2 and r["peak_gflops"] == max(r["peak_probes"])  # before and after training
        # tflop_eq comes from the unrounded time and peak, the record holds them rounded (to 0.01 s and 0.1 GFLOP/s):
        # the recomputed product may be off by their half-units times the other factor, plus tflop_eq's own half-unit
        rounding = 0.005 + 0.005 * r["peak_gflops"] / 1000 + 0.05 * r["train_seconds"] / 1000
        assert r["peak_gflops"] > 1 and r["tflop_eq"] == pytest.approx(r["train_seconds"] * r["peak_gflops"] / 1000,
                                                                       abs=rounding)
        # efficiency is rounded to 3 decimals: on a busy machine (0.018) that alone is 3% of it
        assert r["efficiency"] == pytest.approx(r["train_tflop"] / r["tflop_eq"], rel=0.02, abs=0.0006)
        assert Path(r["checkpoint"]) == tmp_path / f"seed{r['seed']}.pt"
    assert summary["mean_test_acc"] == round(sum(r["test_acc"] for r in runs) / 2, 2)
    assert (tmp_path / "report.jsonl").read_text().splitlines() == out.splitlines()  # what verify_checkpoints reads
    assert summary["max_train_seconds"] == max(r["train_seconds"] for r in runs)

    # The saved models, rebuilt and evaluated without helpers' evaluation code, give the reported numbers
    # (quick mode evaluates the first 1,000 test images).
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from verify_checkpoints import accuracies, official_test_set

    images, labels = official_test_set(real_data_root)
    for r in runs:
        path = Path(r["checkpoint"])
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["test_images"] == 1000  # what verify_checkpoints evaluates it on
        assert accuracies(checkpoint, path, images[:1000], labels[:1000]) == [r["test_acc"], r["test_acc_plain"]]


def test_a_bad_value_is_one_error_line_and_status_2(real_data_root):
    result = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--quick", "--batch-size", "4096",
                             "--data", str(real_data_root)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == ("python benchmarks/time_to_accuracy.py: error: batch size 4096 is larger than the 2048 "
                             "training images: lower it or use more data\n")


@pytest.mark.parametrize("setup, args, message", [
    (None, ["--seed", "0", "1", "0"], "seed 0 is given more than once: each seed runs once"),
    ("seed1.pt", ["--seed", "0", "1"], "already holds seed1.pt: choose another --out (nothing is replaced)"),
    ("file", ["--seed", "0"], "is a file, not a folder"),
])
def test_the_benchmark_refuses_before_training_to_repeat_a_seed_or_replace_a_result(tmp_path, real_data_root, setup,
                                                                                   args, message):
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("mine")
    elif setup:
        out.mkdir()
        (out / setup).write_text("an earlier result")
    result = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--quick", *args, "--out", str(out),
                             "--data", str(real_data_root)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert not out.is_dir() or all(p.read_text() == "an earlier result" for p in out.iterdir())


def verify(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verify_checkpoints.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, real_data_root):
    """A tiny S7Net saved as the benchmark saves, with its true accuracies (TTA flip, plain)."""
    torch.manual_seed(0)
    path = save_checkpoint(S7Net((8, 16, 32, 48)).eval(), tmp_path_factory.mktemp("bench") / "seed0.pt",
                           recipe=asdict(Recipe(tta="flip")))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from verify_checkpoints import accuracies, official_test_set

    return path, accuracies(torch.load(path, weights_only=True), path, *official_test_set(real_data_root))


@pytest.mark.slow  # each evaluates on the 10,000 test images in a fresh process
def test_verify_checkpoints_matches_by_the_path_as_reported_and_fails_on_a_difference_or_a_stranger(
        tmp_path, real_data_root, tiny_checkpoint):
    path, (tta, plain) = tiny_checkpoint

    def report(checkpoint, test_acc):
        (tmp_path / "report.jsonl").write_text(json.dumps({"checkpoint": str(checkpoint), "test_acc": test_acc,
                                                           "test_acc_plain": plain}) + "\n")
        return tmp_path / "report.jsonl"

    matches = verify(path, "--data", real_data_root, "--report", report(path, tta))
    assert matches.returncode == 0 and "matches the report" in matches.stdout, matches.stderr
    differs = verify(path, "--data", real_data_root, "--report", report(path, round(tta + 0.01, 2)))
    assert differs.returncode == 1 and "DIFFERS from the report" in differs.stdout
    assert "1 of 1 checkpoints do not match" in differs.stderr
    # Another run's seed0.pt is not this report's seed 0, whatever its file name.
    stranger = tmp_path / "elsewhere" / "seed0.pt"
    stranger.parent.mkdir()
    stranger.write_bytes(path.read_bytes())
    missing = verify(stranger, "--data", real_data_root, "--report", report(path, tta))
    assert missing.returncode == 1 and "is not in the report" in missing.stdout
    # A relative path in the report is taken from the folder the script runs in, as the benchmark wrote it.
    relative = verify("seed0.pt", "--data", real_data_root, "--report", report("seed0.pt", tta), cwd=path.parent)
    assert relative.returncode == 0 and "matches the report" in relative.stdout, relative.stderr


@pytest.mark.slow  # each evaluates on the 10,000 test images in a fresh process
def test_without_a_report_a_checkpoint_is_compared_with_the_accuracy_it_carries(tmp_path, real_data_root,
                                                                                 tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(real_data_root))  # --data defaults to it, as everywhere
    path, (tta, _) = tiny_checkpoint
    checkpoint = torch.load(path, weights_only=True)
    for claim, status, words in [(tta, 0, "matches the accuracy it carries"),
                                 (round(tta + 0.5, 2), 1, "DIFFERS from the accuracy it carries")]:
        torch.save({**checkpoint, "test_acc": claim}, tmp_path / "carried.pt")  # as helpers.train saves its model
        result = verify(tmp_path / "carried.pt")
        assert result.returncode == status and words in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("breakage, status, message", [
    ("no report", 2, "the report"),
    ("truncated checkpoint", 1, "is not a checkpoint that loads safely"),
    ("truncated test file", 2, "is not the official file (its MD5 differs)"),
    ("no test file", 2, "no CIFAR-10 test file in"),
])
def test_unusable_input_is_one_line_not_a_traceback(tmp_path, real_data_root, tiny_checkpoint, breakage, status,
                                                    message):
    path, _ = tiny_checkpoint
    data, report = real_data_root, []
    if breakage == "no report":
        report = ["--report", tmp_path / "gone.jsonl"]
    elif breakage == "truncated checkpoint":
        path = tmp_path / "cut.pt"
        path.write_bytes(tiny_checkpoint[0].read_bytes()[:500])
    else:
        data = tmp_path / "data"
        (data / "cifar-10-batches-bin").mkdir(parents=True)
        if breakage == "truncated test file":
            source = Path(real_data_root) / "cifar-10-batches-bin" / "test_batch.bin"
            (data / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(source.read_bytes()[:-3073])
    result = verify(path, "--data", data, *report)
    assert result.returncode == status and message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_gpu_check_shows_every_step_it_would_run_and_runs_none(tmp_path):
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--data", str(tmp_path / "data"),
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    steps = [line.split(":")[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    for step in ("install", "nvidia-smi", "torch-gpu", "tests", "launches", "fast", "fast-verify", "fast-compiled",
                 "fast-gpu", "fast-gpu-verify", "full", "full-verify", "notebook"):
        assert step in steps, step
    assert "--preset full --seed 0" in result.stdout and "S7_QUICK=0" in result.stdout
    assert f"--out {tmp_path / 'out' / 'full'}\n" in result.stdout  # an absolute --out as given, not under the repo
    assert not (tmp_path / "out").exists()  # a dry run makes nothing


@pytest.mark.slow  # each evaluates on the 10,000 test images in a fresh process
@pytest.mark.parametrize("where, offset, status, words", [
    ("this cpu", 0.0, 0, "matches the report"),
    ("this cpu", 0.01, 1, "DIFFERS from the report"),  # one image, on the processor that measured it: a defect
    ("gpu", 0.03, 0, "matches the report"),
    ("gpu", -0.03, 0, "matches the report"),
    ("gpu", 0.04, 1, "DIFFERS from the report"),
    ("other cpu", 0.02, 0, "matches the report"),
])
def test_a_record_from_another_device_is_matched_within_3_images_and_one_from_this_cpu_exactly(
        tmp_path, real_data_root, tiny_checkpoint, where, offset, status, words):
    """A GPU's evaluation may round a near-tied image the other way (cuDNN's Winograd or FFT algorithms): 3 of the
    10,000 test images, 0.03%, are allowed there; the CPU that measured a record must reproduce it to the digit."""
    path, (tta, plain) = tiny_checkpoint
    device, processor = {"this cpu": ("cpu", processor_name(torch.device("cpu"))),
                         "gpu": ("cuda:0", "NVIDIA H100 80GB HBM3"),
                         "other cpu": ("cpu", "AMD EPYC (family 26)")}[where]
    record = {"checkpoint": str(path), "device": device, "processor": processor, "test_acc": round(tta + offset, 2),
              "test_acc_plain": plain}
    (tmp_path / "report.jsonl").write_text(json.dumps(record))
    result = verify(path, "--data", real_data_root, "--report", tmp_path / "report.jsonl")
    assert result.returncode == status and words in result.stdout, result.stdout + result.stderr
    assert ("within 3 images (0.03%)" in result.stdout or "by more than 3 images" in result.stdout) == \
        (where != "this cpu")
