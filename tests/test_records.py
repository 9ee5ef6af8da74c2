"""The time table the notebook's settings cell prints, read from benchmark outputs as the benchmark wrote them: a
time belongs to the machine that measured it, and no machine's time is converted to another's."""
import json
import re

from helpers.lecture.records import RESULTS, benchmark_runs, here_note, seed_range, time_rows

ZEN5 = "AMD EPYC (family 26, model 2)"


def record(preset, seed, processor, seconds, plain, tta, device="cpu", precision="bf16", epochs=12):
    return {"preset": preset, "seed": seed, "device": device, "processor": processor, "precision": precision,
            "epochs": epochs, "train_seconds": seconds, "test_acc": tta, "test_acc_plain": plain}


def test_runs_are_read_from_the_results_folder_only_not_its_subfolders(tmp_path):
    full = [record("full", 0, "Xeon", 1800, 91.0, 93.0), record("full", 1, "Xeon", 2400, 91.5, 92.8)]
    (tmp_path / "full.jsonl").write_text("\n".join(map(json.dumps, full + [{"summary": "full", "seeds": [0, 1]}])))
    (tmp_path / "older").mkdir()  # runs kept for the record in subfolders are not the presets' own
    (tmp_path / "older" / "full.jsonl").write_text(json.dumps(record("full", 0, "Xeon", 60, 1.0, 1.0)))
    assert [(r["preset"], r["seed"]) for r in benchmark_runs(tmp_path)] == [("full", 0), ("full", 1)]
    assert {r["preset"] for r in benchmark_runs(RESULTS)} >= {"tutorial", "s7net", "fast", "full"}


def test_one_row_per_preset_and_machine_with_plain_and_tta_accuracy_labelled():
    runs = [record("full", 0, "Xeon", 1800, 91.0, 93.0, precision="fp32"), record("full", 1, "Xeon", 2400, 91.5, 92.8),
            record("full", 0, ZEN5, 600, 92.0, 93.2),
            record("tutorial", 0, "NVIDIA H100", 30, 55.0, 55.0, device="cuda:0", precision="fp32", epochs=2)]
    rows = time_rows(["tutorial", "s7net", "full"], runs, {"tutorial": "trained", "full": "loaded"})
    assert [(r["preset"], r["measured on"]) for r in rows] == [
        ("tutorial", "GPU: NVIDIA H100"), ("s7net", "not measured"), ("full", "CPU: Xeon"), ("full", f"CPU: {ZEN5}")]
    tutorial, s7net, xeon, zen5 = rows
    assert tutorial["mean TTA"] == "- (no TTA)" and tutorial["mean plain"] == "55.00%"  # its recipe has no TTA
    assert s7net["notebook"] == "not run" and s7net["median time"] == "-" and s7net["seeds"] == 0
    assert xeon == {"preset": "full", "notebook": "loaded", "measured on": "CPU: Xeon", "precision": "fp32 and bf16",
                    "seeds": 2, "epochs": "12", "median time": "35.0 min", "mean plain": "91.25%",
                    "mean TTA": "92.90%"}
    assert zen5["median time"] == "10.0 min" and zen5["mean plain"] == "92.00%"


def test_a_record_without_a_plain_accuracy_shows_none_rather_than_the_tta_one():
    run = record("fast", 0, "Xeon", 40, None, 82.0, epochs=1.2)
    del run["test_acc_plain"]
    (row,) = time_rows(["fast"], [run], {})
    assert row["mean plain"] == "-" and row["mean TTA"] == "82.00%"


def test_this_machine_is_told_its_own_records_or_that_none_exist_never_a_conversion():
    runs = [record("fast", 0, ZEN5, 20, 81.0, 82.0), record("s7net", 0, ZEN5, 140, 82.0, 83.0)]
    assert here_note(runs, "cpu", ZEN5).startswith(f"this machine (CPU: {ZEN5}) has records of fast, s7net")
    other = here_note(runs, "cpu", "Intel Xeon", width=200)
    assert "no record on this processor, so no time to expect here" in other
    assert not re.search(r"\d+(\.\d+)? (s|min)\b", other)  # no time quoted for a machine that never ran it
    gpu = here_note(runs, "cuda", "NVIDIA H100 80GB HBM3", width=200)
    assert "no record on a GPU of this kind" in gpu and "kernel launches" in gpu
    assert all(len(line) <= 110 for line in here_note(runs, "cuda", "NVIDIA H100 80GB HBM3").splitlines())


def test_the_seed_range_keeps_each_machine_apart():
    runs = [record("tutorial", 0, "Xeon", 60, 55.5, 55.5), record("tutorial", 1, "Xeon", 60, 54.25, 54.25),
            record("tutorial", 0, ZEN5, 60, 53.0, 53.0), record("fast", 0, "Xeon", 40, 81.0, 82.0)]
    assert seed_range(runs, "tutorial") == (f"recorded seeds of tutorial: 2 on CPU: Xeon: 54.25% to 55.50% plain; "
                                            f"1 on CPU: {ZEN5}: 53.00% to 53.00% plain")
    assert seed_range(runs, "s7net") == "no recorded seed of s7net"
