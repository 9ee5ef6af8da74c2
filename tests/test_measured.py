"""The run-time table the notebook's settings cell prints, read from benchmark outputs as the benchmark wrote them."""
import json

from helpers.measured import benchmark_runs, run_time_table


def test_the_table_quotes_the_median_time_per_processor_every_precision_used_and_the_mean_accuracy(tmp_path):
    full = [{"preset": "full", "seed": 0, "device": "cpu", "processor": "Xeon", "precision": "fp32", "epochs": 12,
             "train_seconds": 1800, "test_acc": 93.0},
            {"preset": "full", "seed": 1, "device": "cpu", "processor": "Xeon", "precision": "bf16", "epochs": 12,
             "train_seconds": 2400, "test_acc": 92.8}]
    fast = {"preset": "fast", "seed": 0, "device": "cuda:0", "processor": "H200", "precision": "bf16", "epochs": 1,
            "train_seconds": 6, "test_acc": 81.0}
    zen5 = {**full[0], "seed": 0, "processor": "AMD EPYC (family 26, model 2)", "precision": "bf16",
            "train_seconds": 600, "test_acc": 92.7}
    (tmp_path / "full-zen5.jsonl").write_text(json.dumps(zen5))  # another processor: its own figure
    (tmp_path / "full.jsonl").write_text("\n".join(map(json.dumps, full + [{"summary": "full", "seeds": [0, 1]}])))
    (tmp_path / "fast.jsonl").write_text(json.dumps(fast))
    (tmp_path / "older").mkdir()  # runs kept for the record in subfolders are not the presets' own
    (tmp_path / "older" / "full.jsonl").write_text(json.dumps({**full[0], "train_seconds": 60}))

    records = benchmark_runs(tmp_path)
    assert sorted((r["preset"], r["seed"]) for r in records) == [("fast", 0), ("full", 0), ("full", 0), ("full", 1)]
    assert run_time_table(["fast", "full", "s7net"], records).splitlines() == [
        "    fast: CPU: not measured; CUDA: 6.0 s for 1 epoch (H200, bf16; median of 1 run, mean test accuracy "
        "81.00%)",
        "    full: CPU: 10.0 min for 12 epochs (AMD EPYC (family 26, model 2), bf16; median of 1 run, mean test "
        "accuracy 92.70%), 35.0 min for 12 epochs (Xeon, fp32 and bf16; median of 2 runs, mean test accuracy 92.90%); "
        "CUDA: not measured",
        "   s7net: CPU: not measured; CUDA: not measured"]


def test_the_time_to_expect_here_comes_from_the_runs_compute_and_this_machines_peak():
    runs = [{"preset": "fast", "seed": s, "device": "cpu", "processor": "Zen 5", "precision": "bf16", "epochs": 1,
             "train_seconds": 20, "test_acc": 81.0, name: tflop_eq}
            for s, (name, tflop_eq) in enumerate([("tflop_eq", 16), ("peak_tflop_s", 18), ("tflop_eq", 30)])]
    # the median compute, 18 TFLOP-eq (older records name it peak_tflop_s), on a machine of 300 GFLOP/s: 60 s
    assert run_time_table(["fast"], runs, peak=300.0).endswith("; here: about 60.0 s")
    assert "here" not in run_time_table(["fast"], runs)
