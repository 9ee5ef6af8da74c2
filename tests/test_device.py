import ctypes
import json
import platform
import subprocess
import sys

import pytest
import torch

from helpers.data import CIFAR10
from helpers.loop import train
from helpers.recipes import Recipe
from helpers.runtime import device as device_module
from helpers.runtime.device import cpu_name, peak_gflops, probe_dtypes, probe_matmul
from helpers.runtime.precision import unsupported_reason

# Run in a fresh process: any training earlier in the test session has already changed its allocator.
FAULTS_PER_STEP = """
import json, resource, torch
from helpers.runtime.device import keep_freed_memory
from helpers.models import S7AirNet

model = S7AirNet(widths=(24, 64, 128, 128)).to(memory_format=torch.channels_last)
images = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(images).sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = [faults() for _ in range(7)][1:]  # the first step allocates what it needs, in either case
keep_freed_memory()
kept = [faults() for _ in range(7)][1:]
print(json.dumps({"default": default, "kept": kept}))
"""


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not glibc(), reason="mallopt is glibc's")
def test_on_the_cpu_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, check=True)
    faults = json.loads(result.stdout.strip().splitlines()[-1])
    # Measured: 24,000-42,000 page faults in six steps by default (each a zero-filled 4 KiB page), 0-1,400 after.
    assert sum(faults["default"]) > 10_000
    assert sum(faults["kept"]) < sum(faults["default"]) / 10


ZEN5_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
"""


def test_the_cpu_name_carries_family_and_model_when_the_model_name_alone_says_little():
    assert cpu_name(ZEN5_CPUINFO) == "AMD EPYC (family 26, model 2)"
    assert cpu_name("model name\t: Apple M3\n") == "Apple M3"  # an ARM cpuinfo may give neither number
    with pytest.raises(ValueError, match="no model name"):
        cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n")


class ThreadsSeen(torch.nn.Module):
    """A tiny network that records how many intra-op threads torch has while it trains."""

    def __init__(self):
        super().__init__()
        self.model_kwargs, self.seen = {}, []
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)

    def init_from_data(self, images):
        pass

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("batch, expected", [(4, 1), (8, 1), (16, None)])
def test_a_step_of_a_few_images_trains_on_one_thread_and_the_setting_comes_back(batch, expected):
    """One thread at batch 8 and below, torch's own setting above; restored after training either way."""
    before = torch.get_num_threads()
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    data = CIFAR10(images, torch.randint(0, 10, (32,)), images[:4], torch.zeros(4, dtype=torch.int64))
    model = ThreadsSeen()
    recipe = Recipe(epochs=1, batch_size=batch, precision="fp32", channels_last=False)
    train(model, data, recipe, device=torch.device("cpu"), progress=False, evaluate_each_epoch=False)
    assert set(model.seen) == {expected or before} and torch.get_num_threads() == before


@pytest.mark.parametrize("mac, refused", [("13.6.1", True), ("14.2", False), ("15.0", False), ("", False)])
def test_mps_bf16_needs_macos_14_and_the_peak_probe_times_only_what_the_device_computes(monkeypatch, mac, refused):
    """MPS computes bf16 from macOS 14 on: earlier the precision is refused and the probe times fp32 alone. Off
    macOS ("") there is no MPS to refuse."""
    monkeypatch.setattr(platform, "mac_ver", lambda: (mac, ("", "", ""), ""))
    reason = unsupported_reason("mps", "bf16", (2, 14))
    assert (reason is not None) == refused
    if refused:
        assert reason == "bf16 on Apple MPS needs macOS 14 or newer (this is macOS 13.6): use fp32"
    assert probe_dtypes(torch.device("mps")) == [torch.float32] + [torch.bfloat16] * (not refused)
    assert unsupported_reason("mps", "fp32", (2, 14)) is None


@pytest.mark.parametrize("capability, half", [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
def test_a_gpus_peak_probe_times_fp32_and_the_half_precision_it_trains_in(monkeypatch, capability, half):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert probe_dtypes(torch.device("cuda")) == [torch.float32, half]


def made_up_speed(monkeypatch, gflops: float) -> list[float]:
    """Every timed product of the peak probe takes the time it would at `gflops`, its matrices on the meta device
    (whose products cost nothing); returns the seconds the device spends on each timing, filled as the probe runs
    (the untimed warm-up, one product per size, aside)."""
    spent = []

    def fake_seconds_of(work, device, times: int = 10):
        seconds = 2 * work.args[0].shape[0] ** 3 / (gflops * 1e9)
        spent.append(seconds * times)
        return seconds

    monkeypatch.setattr(device_module, "seconds_of", fake_seconds_of)
    monkeypatch.setattr(device_module, "probe_operands",
                        lambda size, device, dtype: [torch.empty(size, size, dtype=dtype, device="meta")] * 2)
    return spent


@pytest.mark.parametrize("tflops, size", [(4, 2048), (8, 2048), (65, 4096), (700, 8192), (2000, 8192)])
def test_the_peak_probe_grows_to_a_size_it_can_time_and_takes_a_second_or_two_on_any_gpu(monkeypatch, tflops, size):
    """A made-up GPU of `tflops` (capability 8.0; its products timed 10 at a time, as CUDA events time them): the
    probe measures that rate, at a size where a product takes at least 2 ms, in under 2 s of the GPU's time (a fixed
    8192^3 probe took 110 TFLOP: half a minute on a T4)."""
    spent = made_up_speed(monkeypatch, tflops * 1000)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    gpu = torch.device("cuda")
    assert probe_matmul(gpu, torch.float32)[0] == size
    spent.clear()
    assert peak_gflops(gpu) == pytest.approx(tflops * 1000)
    assert sum(spent) < 2


def test_a_cpu_probes_the_2048_products_of_its_records_and_a_slow_one_repeats_them_less(monkeypatch):
    """Half the slowest CPU met: a 2048^3 product takes 0.2 s, so 3 timings of each dtype instead of 5."""
    spent = made_up_speed(monkeypatch, 80)
    cpu = torch.device("cpu")
    assert probe_matmul(cpu, torch.float32)[0] == 2048
    spent.clear()
    assert peak_gflops(cpu) == pytest.approx(80)
    assert len(spent) == 2 * 3 and sum(spent) < 2


class FakeEvent:
    """torch.cuda.Event as the CPU can fake it: the stream each record lands on (cuda:0's current stream when none
    is given, as torch's own), and 20 ms between two records."""

    def __init__(self, enable_timing=False):
        self.stream = None

    def record(self, stream=None):
        self.stream = stream or torch.cuda.current_stream(0)

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return 20.0


def test_a_gpu_other_than_the_current_one_is_timed_on_its_own_stream(monkeypatch):
    """torch.cuda.Event().record() without a stream records on the *current* device (cuda:0 unless set): timing
    cuda:1's products there would time an idle GPU."""
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device=0: f"stream of cuda:{getattr(device, 'index', device)}")
    events = []
    monkeypatch.setattr(torch.cuda, "Event", lambda **kwargs: events.append(FakeEvent(**kwargs)) or events[-1])
    calls = []
    assert device_module.seconds_of(lambda: calls.append(1), torch.device("cuda", 1), times=10) == pytest.approx(0.002)
    assert [event.stream for event in events] == ["stream of cuda:1"] * 2 and len(calls) == 10


def test_an_apple_gpu_is_named_by_its_chip_not_by_its_architecture(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "get_name", lambda: "Apple M2 Pro", raising=False)
    assert device_module.processor_name(torch.device("mps")) == "Apple M2 Pro"
    monkeypatch.delattr(torch.backends.mps, "get_name")  # a torch without it: platform's word, as before
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc on macOS")))
    assert device_module.processor_name(torch.device("mps")) == "arm"
