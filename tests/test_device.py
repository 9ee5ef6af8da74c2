import ctypes
import json
import subprocess
import sys

import pytest
import torch

from helpers.data import CIFAR10
from helpers.device import cpu_name
from helpers.recipes import Recipe
from helpers.training import train

# Run in a fresh process: any training earlier in the test session has already changed its allocator.
FAULTS_PER_STEP = """
import json, resource, torch
from helpers.device import keep_freed_memory
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
