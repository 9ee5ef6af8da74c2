"""The precision policy: decided once before training, from what the device is (never from a timing), what each
backend can do, and fp16 with its scaler on a CPU."""
import os
import time
from dataclasses import asdict

import pytest
import torch

from helpers.checkpoints import load_resumable
from helpers.errors import ConfigError
from helpers.loop import seed_everything, train
from helpers.models import S7Net
from helpers.recipes import Recipe
from helpers.runtime import precision as precision_module
from helpers.runtime.precision import (
    Precision,
    cpu_precision,
    decide_precision,
    read_cpuinfo,
    torch_version,
    unsupported_reason,
)
from helpers.train import main

CPU = torch.device("cpu")
TINY = (8, 16, 32, 48)


def cpuinfo(vendor: str, family: int, model: int, name: str, flags: str) -> str:
    """A /proc/cpuinfo of two processors as Linux writes it (the second one's flags must not matter)."""
    first = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
             f"model name\t: {name}\nflags\t\t: fpu sse sse2 avx avx2 fma {flags}\n")
    return first + "\n" + first.replace("processor\t: 0", "processor\t: 1").replace(flags, "amx_bf16")


# The processors of DESIGN.md's table ("Processors met"), and the ones that have no bf16 units.
XEON_NO_AMX = cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Processor", "avx512f avx512bw avx512_vnni avx512_bf16")
XEON_AMX = cpuinfo("GenuineIntel", 6, 207, "Intel(R) Xeon(R) Processor",
                   "avx512f avx512_bf16 amx_bf16 amx_tile amx_int8")
ZEN4 = cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", "avx512f avx512_bf16 avx512_vnni")
ZEN5 = cpuinfo("AuthenticAMD", 26, 2, "AMD EPYC", "avx512f avx512_bf16 avx_vnni")
ZEN3 = cpuinfo("AuthenticAMD", 25, 1, "AMD EPYC", "sha_ni vaes")
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 i8mm\n"


@pytest.mark.parametrize("info, precision, rule", [
    (XEON_NO_AMX, "fp32", "AVX512-BF16 without AMX"),
    (XEON_AMX, "bf16", "AMX"),
    (ZEN4, "bf16", "an AMD CPU with AVX512-BF16"),
    (ZEN5, "bf16", "an AMD CPU with AVX512-BF16"),
    (ZEN3, "fp32", "no bf16 matrix units"),
    (ARM, "fp32", "no bf16 matrix units"),
    ("", "fp32", "no bf16 matrix units"),  # no /proc/cpuinfo (macOS, Windows)
])
def test_auto_on_a_cpu_follows_the_processors_features(info, precision, rule):
    chosen, said = cpu_precision(info, batch_size=128)
    assert chosen == precision and rule in said


@pytest.mark.parametrize("batch, precision", [(4, "fp32"), (8, "fp32"), (9, "bf16"), (512, "bf16")])
def test_steps_of_a_few_images_stay_fp32_on_any_cpu(batch, precision):
    chosen, said = cpu_precision(XEON_AMX, batch_size=batch)
    assert chosen == precision
    assert ("steps of at most 8 stay in fp32" in said) == (precision == "fp32")


def test_the_decision_reads_no_clock_so_a_busy_machine_decides_as_an_idle_one(monkeypatch):
    monkeypatch.setattr(precision_module, "read_cpuinfo", lambda: ZEN4)
    idle = decide_precision(Recipe(batch_size=128), CPU)
    assert idle == (Recipe(batch_size=128, precision="bf16"),
                    "precision auto: bf16 (an AMD CPU with AVX512-BF16 (Zen 4 or later))")

    def no_clock(*args):
        raise AssertionError("the precision decision read a clock")

    for clock in ("perf_counter", "process_time", "time", "monotonic", "perf_counter_ns", "process_time_ns"):
        monkeypatch.setattr(time, clock, no_clock)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))  # a machine as busy as it gets
    assert decide_precision(Recipe(batch_size=128), CPU) == idle


def test_the_real_processor_is_read_and_decided_the_same_every_time():
    assert decide_precision(Recipe(), CPU) == decide_precision(Recipe(), CPU)
    assert decide_precision(Recipe(), CPU)[0].precision == cpu_precision(read_cpuinfo(), 512)[0]


@pytest.mark.parametrize("capability, precision", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_on_a_gpu_follows_its_compute_capability(monkeypatch, capability, precision):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    recipe, line = decide_precision(Recipe(), torch.device("cuda"))
    assert recipe.precision == precision and line.startswith(f"precision auto: {precision} (this GPU has")


def test_auto_on_mps_is_fp32():
    assert decide_precision(Recipe(), torch.device("mps"))[0].precision == "fp32"


def test_an_explicit_precision_is_kept_and_a_resumed_run_keeps_its_own():
    assert decide_precision(Recipe(precision="bf16"), CPU) == (Recipe(precision="bf16"),
                                                               "precision bf16 (as the recipe sets it)")
    resumed = {"recipe": asdict(Recipe(precision="fp16"))}
    assert decide_precision(Recipe(), CPU, resume_from=resumed) == (Recipe(precision="fp16"),
                                                                    "precision auto: fp16 (the resumed run's own)")


def test_a_bf16_run_resumed_with_auto_on_a_gpu_without_bf16_is_refused_as_a_plain_resume_is(monkeypatch):
    """A T4 (compute capability 7.5) emulates bf16: --resume ... --precision auto must not go on there silently."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    checkpoint = {"recipe": asdict(Recipe(precision="bf16"))}
    refusals = []
    for asked in ("auto", "bf16"):  # --precision auto, and a plain --resume (the checkpoint's own precision)
        with pytest.raises(ConfigError) as refused:
            decide_precision(Recipe(precision=asked), torch.device("cuda"), resume_from=checkpoint)
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1] == ("this GPU has no native bfloat16 (compute capability below 8.0): use fp16 "
                                          "or fp32 (a resumed run may go on in another precision: --precision)")


def test_a_precision_the_device_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("helpers.runtime.precision.torch_version", lambda: (2, 5))
    with pytest.raises(ConfigError, match="bf16 on Apple MPS needs torch 2.6 or newer"):
        decide_precision(Recipe(precision="bf16"), torch.device("mps"))


def test_train_takes_only_a_decided_precision(made_up):
    with pytest.raises(ConfigError, match=r'precision is "auto": settle it before training with '
                                          r'helpers.runtime.precision.decide_precision\(recipe, device\)'):
        train(S7Net(TINY), made_up, Recipe(epochs=1, batch_size=64), device=CPU, progress=False)


@pytest.fixture
def made_up():
    from helpers.data import CIFAR10
    make = torch.Generator().manual_seed(0)
    return CIFAR10(torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=make),
                   torch.randint(0, 10, (128,), generator=make), torch.zeros(8, 3, 32, 32, dtype=torch.uint8),
                   torch.zeros(8, dtype=torch.int64))


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


def test_torch_versions_are_read_as_major_and_minor():
    assert torch_version("2.14.1+cu130") == (2, 14) and torch_version("2.2.0") == (2, 2)


def test_fp32_constructs_no_autocast_at_all(monkeypatch, made_up):
    """torch.autocast("mps") raises in its constructor before torch 2.5, even disabled: fp32 must never build one."""
    def refuse(*args, **kwargs):
        raise RuntimeError("autocast is not available on this device")

    monkeypatch.setattr(torch, "autocast", refuse)
    with Precision.for_run(CPU, "fp32", 64).autocast:
        pass
    history = train(S7Net(TINY), made_up, Recipe(epochs=1, batch_size=64, precision="fp32"), device=CPU,
                    progress=False)
    assert history[0]["precision"] == "fp32" and len(history[0]["step_loss"]) == 2
    with pytest.raises(RuntimeError, match="autocast is not available"):
        Precision.for_run(CPU, "bf16", 64)


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_the_command_line_trains_in_each_precision_and_records_it(precision, tmp_path, real_data_root, capsys):
    main(["--quick", "--batch-size", "512", "--widths", *map(str, TINY), "--precision", precision,
          "--device", "cpu", "--data", str(real_data_root), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    used = load_resumable(tmp_path / "last.pt")["recipe"]["precision"]
    if precision == "auto":
        expected, rule = cpu_precision(read_cpuinfo(), 512)
        line = f"precision auto: {expected} ({rule})"
    else:
        expected, line = precision, f"precision {precision} (as the recipe sets it)"
    assert used == expected and line in out.splitlines()
