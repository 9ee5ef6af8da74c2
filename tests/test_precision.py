"""The precision policy: what each backend can do, the CPU's measured choice, and fp16 with its scaler on a CPU."""
import pytest
import torch

from helpers.checkpoints import load_resumable
from helpers.train import main
from helpers.models import S7Net
from helpers.precision import autocast, fastest, fixed_choice, torch_version, unsupported_reason
from helpers.recipes import Recipe
from helpers.recipes import ConfigError
from helpers import training
from helpers.training import seed_everything, train, with_precision

CPU = torch.device("cpu")
TINY = (8, 16, 32, 48)


@pytest.mark.parametrize("device_type, precision, version, bf16_native, refused", [
    ("mps", "bf16", (2, 5), True, "bf16 on Apple MPS needs torch 2.6"),
    ("mps", "bf16", (2, 6), True, None),
    ("mps", "fp16", (2, 7), True, "fp16 on Apple MPS needs torch 2.8"),
    ("mps", "fp16", (2, 8), True, None),
    ("mps", "fp32", (2, 2), True, None),
    ("cuda", "bf16", (2, 14), False, "no native bfloat16"),
    ("cuda", "bf16", (2, 14), True, None),
    ("cuda", "fp16", (2, 2), False, None),
    ("cpu", "bf16", (2, 2), True, None),
    ("cpu", "fp16", (2, 2), True, None),
    ("cpu", "auto", (2, 14), True, "unknown precision 'auto'"),
])
def test_what_each_backend_and_torch_version_can_train_in(device_type, precision, version, bf16_native, refused):
    reason = unsupported_reason(device_type, precision, version, cuda_bf16_native=bf16_native)
    assert reason is None if refused is None else refused in reason


def test_auto_is_fixed_on_gpus_and_measured_on_cpus():
    assert fixed_choice(torch.device("mps")) == "fp32"
    assert fixed_choice(CPU) is None
    assert torch_version("2.14.1+cu130") == (2, 14) and torch_version("2.2.0") == (2, 2)


def test_bf16_wins_only_when_clearly_faster_and_fp32_keeps_the_rest():
    assert fastest({"fp32": 900.0, "bf16": 1000.0}) == "bf16"
    assert fastest({"fp32": 1000.0, "bf16": 1050.0}) == "fp32"  # within a measurement's noise: the more exact
    assert fastest({"fp32": 1000.0, "bf16": 1000.0}) == "fp32"
    assert fastest({"fp32": 1000.0, "bf16": 900.0}) == "fp32"


def test_fp32_constructs_no_autocast_at_all(monkeypatch, real_data):
    """torch.autocast("mps") raises in its constructor before torch 2.5, even disabled: fp32 must never build one."""
    def refuse(*args, **kwargs):
        raise RuntimeError("autocast is not available on this device")

    monkeypatch.setattr(torch, "autocast", refuse)
    with autocast(CPU, "fp32"):
        pass
    history = train(S7Net(TINY), real_data.subset(128, 64), Recipe(epochs=1, batch_size=64, precision="fp32"),
                    device=CPU, progress=False)
    assert history[0]["precision"] == "fp32"
    with pytest.raises(RuntimeError, match="autocast is not available"):
        autocast(CPU, "bf16")


def test_auto_on_a_cpu_measures_both_keeps_the_faster_remembers_it_and_leaves_the_run_untouched(
        capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("S7_PRECISION_CACHE", str(tmp_path / "precision.json"))
    measure = training.step_rates
    monkeypatch.setattr(training, "step_rates", lambda *args: (measure(*args)[0], 1.0))  # a machine to itself
    model = S7Net(TINY)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    recipe = with_precision(Recipe(batch_size=64), model, CPU, report=print)
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"precision auto: {recipe.precision} (fp32 ") and "bf16 " in line and "img/s" in line
    assert "interleaved rounds" in line and "pin it with --precision" in line
    rates = {name: float(rate.replace(",", "")) for name, rate in
             (part.split()[:2] for part in line.split("(")[1].split(":")[0].split(", "))}
    assert recipe.precision == fastest(rates) and set(rates) == {"fp32", "bf16"}
    assert torch.equal(torch.get_rng_state(), rng)  # the probe drew nothing from the run's random state
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, weights[name]), name  # it trained a copy
    # The next run on this processor takes the remembered answer, measuring nothing: the load of the machine at
    # that moment cannot flip it.
    monkeypatch.setattr(training, "step_rates", lambda *args: pytest.fail("measured again"))
    again = with_precision(Recipe(batch_size=64), S7Net(TINY), CPU, report=print)
    assert again.precision == recipe.precision
    assert "measured on this processor before" in capsys.readouterr().out
    with pytest.raises(pytest.fail.Exception, match="measured again"):  # another network is another question
        with_precision(Recipe(batch_size=64), S7Net((8, 16, 32, 64)), CPU)


def test_a_probe_on_a_busy_machine_is_not_remembered(capsys, tmp_path, monkeypatch):
    """Another process took the cores while the probe ran (it got 40% of its threads' time): the answer is used for
    this run only, says so, and the next run measures again."""
    monkeypatch.setenv("S7_PRECISION_CACHE", str(tmp_path / "precision.json"))
    monkeypatch.setattr(training, "step_rates", lambda *args: ({"fp32": 100.0, "bf16": 50.0}, 0.4))
    assert with_precision(Recipe(batch_size=64), S7Net(TINY), CPU, report=print).precision == "fp32"
    assert "the machine was busy (the probe had 40% of its threads' time)" in capsys.readouterr().out
    assert not (tmp_path / "precision.json").exists()


def test_the_probe_measures_its_share_of_the_cores():
    """Alone it gets nearly all of its threads' time (a little goes to the untimed parts); a fake measurement of
    nothing gets none: the share tells a busy machine."""
    _, share = training.step_rates(S7Net(TINY), Recipe(batch_size=32), CPU)
    assert 0 < share <= 1.5


def test_the_probe_interleaves_the_precisions_so_a_busy_moment_slows_both_alike(monkeypatch):
    """A made-up machine on which bf16 trains 1.5x faster, made 4x slower by another job while bf16 is timed for the
    first time: a probe that timed each once would choose fp32; the medians of interleaved rounds see the truth."""
    calls = []

    def fake_train(model, data, recipe, generator, device, **options):
        calls.append(recipe.precision)
        busy = 4.0 if len(calls) == 4 else 1.0  # calls 1 and 2 are the untimed first round
        rate = {"fp32": 1000.0, "bf16": 1500.0}[recipe.precision] / busy
        return [{"seconds": len(data.train_images) / rate}]

    monkeypatch.setattr(training, "train", fake_train)
    rates, _ = training.step_rates(S7Net(TINY), Recipe(batch_size=64), CPU)
    assert calls == ["fp32", "bf16"] * (training.PROBE_ROUNDS + 1)
    assert rates == {"fp32": 1000.0, "bf16": 1500.0} and fastest(rates) == "bf16"


def test_an_explicit_precision_is_kept_and_a_resumed_run_keeps_its_own():
    model = S7Net(TINY)
    assert with_precision(Recipe(precision="bf16"), model, CPU).precision == "bf16"
    resumed = {"recipe": {**vars(Recipe()), "precision": "fp16"}}
    assert with_precision(Recipe(), model, CPU, resume_from=resumed).precision == "fp16"


def test_a_precision_the_device_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("helpers.precision.torch_version", lambda: (2, 5))
    with pytest.raises(ConfigError, match="bf16 on Apple MPS needs torch 2.6 or newer"):
        with_precision(Recipe(precision="bf16"), S7Net(TINY), torch.device("mps"))


def test_fp16_with_its_gradient_scaler_trains_on_a_cpu_and_resumes(tmp_path, real_data):
    data = real_data.subset(256, 64)
    recipe = Recipe(epochs=2, batch_size=64, precision="fp16")
    seed_everything(0)
    history = train(S7Net(TINY), data, recipe, seed_everything(0), CPU, progress=False,
                    checkpoint_path=tmp_path / "last.pt", stop_after_epoch=1)
    assert history[0]["precision"] == "fp16" and torch.isfinite(torch.tensor(history[0]["loss"]))
    saved = load_resumable(tmp_path / "last.pt")
    assert saved["scaler"]["scale"] > 0  # the loss scale goes on with the run
    resumed = S7Net(TINY)
    train(resumed, data, recipe, seed_everything(0), CPU, progress=False, resume_from=saved)
    seed_everything(0)
    whole = S7Net(TINY)
    train(whole, data, recipe, seed_everything(0), CPU, progress=False)
    for (name, a), b in zip(resumed.state_dict().items(), whole.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_the_command_line_trains_in_each_precision_and_records_it(precision, tmp_path, real_data_root, capsys):
    main(["--quick", "--batch-size", "512", "--widths", *map(str, TINY), "--precision", precision,
          "--device", "cpu", "--data", str(real_data_root), "--out", str(tmp_path)])  # auto: a CPU's choices
    out = capsys.readouterr().out
    used = load_resumable(tmp_path / "last.pt")["recipe"]["precision"]
    assert used == precision if precision != "auto" else used in ("fp32", "bf16")
    assert ("precision auto: " in out) == (precision == "auto")
