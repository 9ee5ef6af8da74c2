"""Dropout with its random bits drawn in bulk (helpers.dropout): the same distribution as torch's, seeded by the same
generator, taken by every dropout call of a network's training forward on a CPU and by nothing else."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import helpers.dropout as dropout
from helpers.dropout import LEVELS, FastDropout, cpu_dropout
from helpers.user_network import UserNetwork

ROOT = Path(__file__).resolve().parents[1]


def ones(*shape, channels_last=False):
    x = torch.ones(*shape)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_each_element_is_kept_with_probability_1_minus_p_and_scaled_to_keep_the_mean(p, channels_last):
    torch.manual_seed(0)
    x = ones(64, 16, 32, 32, channels_last=channels_last)  # 1,048,576 elements
    out = cpu_dropout(x, p)
    kept = out != 0
    scale = LEVELS / (LEVELS - round(p * LEVELS))
    assert torch.equal(out[kept], torch.full_like(out[kept], scale))
    n = x.numel()
    spread = 5 * (n * p * (1 - p)) ** 0.5  # five standard deviations of a binomial count
    assert abs(kept.sum().item() - n * (1 - p)) < spread
    assert abs(out.sum().item() / n - 1) < 5 * scale * (p * (1 - p) / n) ** 0.5
    for per_channel in kept.float().mean(dim=(0, 2, 3)):  # every channel alike: no pattern along the memory order
        assert abs(per_channel.item() - (1 - p)) < 5 * (p * (1 - p) / (n / 16)) ** 0.5
    assert out.shape == x.shape and out.dtype == x.dtype


def test_the_mask_follows_the_seed_and_each_call_draws_a_new_one():
    x = torch.randn(8, 4, 6, 6)
    torch.manual_seed(1)
    first, second = cpu_dropout(x, 0.3), cpu_dropout(x, 0.3)
    torch.manual_seed(1)
    assert torch.equal(cpu_dropout(x, 0.3), first)
    assert not torch.equal((first == 0), (second == 0))


def test_zero_keeps_everything_one_drops_everything_and_in_place_matches_out_of_place():
    x = torch.randn(4, 3, 5, 5)
    assert cpu_dropout(x, 0.0) is x
    assert torch.equal(cpu_dropout(x, 1.0), torch.zeros_like(x))
    torch.manual_seed(2)
    expected = cpu_dropout(x, 0.25)
    torch.manual_seed(2)
    y = x.clone()
    assert cpu_dropout(y, 0.25, inplace=True) is y
    assert torch.equal(y, expected)


def test_the_gradient_is_the_mask_times_the_scale():
    x = torch.randn(4, 8, 5, 5, dtype=torch.bfloat16, requires_grad=True)
    out = cpu_dropout(x, 0.2)
    out.sum().backward()
    kept = out.detach() != 0
    assert torch.equal(x.grad, kept.to(x.dtype) * (LEVELS / (LEVELS - round(0.2 * LEVELS))))


class Counted:
    """Counts the calls that take the bulk path."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = dropout.cpu_dropout

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(dropout, "cpu_dropout", counted)


def every_way_to_call_dropout(x):
    x = nn.Dropout(0.1)(x)
    x = F.dropout(x, 0.1, True)
    x = F.dropout(x, p=0.1, training=True)
    x = F.dropout(x, 0.1, True, True)
    return torch.dropout(x, 0.1, True)


def test_the_mode_takes_every_training_dropout_call_on_a_cpu_and_nothing_else(monkeypatch):
    counted = Counted(monkeypatch)
    with FastDropout():
        every_way_to_call_dropout(torch.randn(2, 3, 4, 4))
        assert counted.calls == 5
        F.dropout(torch.randn(2, 3), 0.1, training=False)
        torch.dropout(torch.randn(2, 3), 0.1, False)
        F.dropout(torch.randn(2, 3, device="meta"), 0.1)  # another device: its own dropout
        F.dropout2d(torch.randn(2, 3, 4, 4), 0.1)  # one draw per channel: left as it is
        assert torch.equal(F.relu(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))
        with pytest.raises(ValueError, match="dropout probability"):
            F.dropout(torch.randn(2, 3), 1.5)  # torch's own message for a bad p
    assert counted.calls == 5


def test_a_wrapped_network_takes_the_bulk_path_in_training_only(monkeypatch):
    counted = Counted(monkeypatch)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Dropout(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10))
    model = UserNetwork(network=net)
    model.train()
    model(torch.rand(2, 3, 32, 32))
    assert counted.calls == 1
    model.eval()
    model(torch.rand(2, 3, 32, 32))
    assert counted.calls == 1


def test_the_speed_benchmark_times_both_ways_on_the_same_network(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("import torch.nn as nn\n"
                   "def Net():\n"
                   "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Dropout(0.1), nn.AdaptiveAvgPool2d(1),\n"
                   "                         nn.Flatten(), nn.Linear(8, 10))\n")
    result = subprocess.run([sys.executable, "benchmarks/dropout_speed.py", "--net", f"{net}:Net", "--batch", "4",
                             "--rounds", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert set(line["seconds_per_pass"]) == {"torch", "bulk"} and all(s > 0 for s in line["seconds_per_pass"].values())
    seconds = line["seconds_per_pass"]
    assert abs(line["torch_over_bulk"] - seconds["torch"] / seconds["bulk"]) < 0.01  # the ratio rounded to 0.01
    assert line["batch"] == 4 and line["rounds"] == 2 and line["precision"] in ("bf16", "fp16", "fp32")
