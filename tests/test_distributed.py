"""Several processes (DistributedDataParallel, gloo on CPUs, loopback only) train as one process would."""
import inspect
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from helpers import train as train_module
from helpers.data import CIFAR10, train_batches
from helpers import distributed
from helpers.checkpoints import load_model
from helpers.distributed import distributed_session, init_options, process_group_timeout
from helpers.models import S7Net, TutorialNet
from helpers.recipes import Recipe
from helpers.train import ConfigError, seed_everything, train
from tests.conftest import free_port, made_up_images

# Plain fp32 and layout: what is compared is the arithmetic of the update, to a tight tolerance.
RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05, precision="fp32", channels_last=False, tta="none")


def loopback_env() -> dict:
    """Rendezvous and gloo's traffic on this machine's loopback interface only."""
    env = {"MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def small_data() -> CIFAR10:
    train_images, train_labels = made_up_images(256, seed=0)
    test_images, test_labels = made_up_images(64, seed=1)
    return CIFAR10(*(torch.as_tensor(a) for a in (train_images, train_labels, test_images, test_labels)))


class CountingNet(TutorialNet):
    """TutorialNet has no BatchNorm, so no output depends on the other images of its batch; this one also
    records the batch sizes it trains on."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def forward(self, x):
        if self.training:
            self.batch_sizes.append(len(x))
        return super().forward(x)


def run_training():
    generator = seed_everything(0)
    model = CountingNet()
    history = train(model, small_data(), RECIPE, generator, torch.device("cpu"), progress=False)
    return model, history


def rank_main(rank: int, port: int, out):
    """One of two processes, set up as torchrun would; saves what it ended with."""
    os.environ.update(loopback_env(), MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed_session():
        model, history = run_training()
    torch.save({"state_dict": model.state_dict(), "history": history, "batch_sizes": model.batch_sizes},
               out / f"rank{rank}.pt")


def test_two_processes_make_the_updates_of_one_process_on_the_whole_batch(tmp_path):
    torch.multiprocessing.spawn(rank_main, args=(free_port(), tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    alone, alone_history = run_training()
    assert alone.batch_sizes == [64] * 8
    for rank in ranks:
        assert rank["batch_sizes"] == [32] * 8  # each process trained on its half of every batch
        for name, weight in alone.state_dict().items():
            assert torch.equal(rank["state_dict"][name], ranks[0]["state_dict"][name]), name
            assert torch.allclose(rank["state_dict"][name], weight, rtol=1e-4, atol=1e-6), name
        for entry, expected in zip(rank["history"], alone_history):  # metrics summed over both processes
            assert entry["loss"] == pytest.approx(expected["loss"], rel=1e-5)
            assert entry["train_acc"] == expected["train_acc"] and entry["step_acc"] == expected["step_acc"]


def test_process_slices_of_a_batch_make_up_the_whole_batch():
    images, labels = torch.as_tensor(made_up_images(128, seed=2)[0]), torch.arange(128)
    whole, first, second = (list(train_batches(images, labels, 64, torch.Generator().manual_seed(5), part=part))
                            for part in (slice(None), slice(0, 32), slice(32, 64)))
    for (x, y, i), (x0, y0, i0), (x1, y1, i1) in zip(whole, first, second):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))
        assert torch.equal(i, torch.cat([i0, i1]))


def test_batch_that_does_not_split_over_the_processes_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(train_module, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match="batch size 64 does not split evenly over 3 processes"):
        train(TutorialNet(), small_data(), RECIPE, device=torch.device("cpu"), progress=False)


def test_torchrun_trains_with_two_processes_and_only_rank_0_writes(tmp_path, real_data_root):
    """Two epochs of the fast preset: its whitening bias freezes after the first, and DDP wraps the model again."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "helpers.train", "--quick", "--widths", "8", "16", "32",
               "48", "--epochs", "2", "--data", str(real_data_root), "--out", str(tmp_path)]
    result = subprocess.run(command, env={**os.environ, **loopback_env()}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 processes (DistributedDataParallel)" in result.stdout
    assert result.stdout.count("final test accuracy") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "last.pt", "s7airnet.pt"]
    assert load_model(tmp_path / "s7airnet.pt").model_kwargs["widths"] == [8, 16, 32, 48]


# Each rank imports, waits for "go" (so the 5 s timeout does not also time the other's import), joins, then sums.
STALL_SCRIPT = """
import sys, torch
from helpers.distributed import all_reduce_sum, distributed_session
print("imported", flush=True)
sys.stdin.readline()
with distributed_session():
    print("joined", flush=True)
    while True:
        all_reduce_sum(torch.ones(1))
"""


def test_a_stalled_process_ends_the_other_with_a_timeout_message_instead_of_a_hang():
    env = {**os.environ, **loopback_env(), "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           "S7_DIST_TIMEOUT": "5"}
    ranks = [subprocess.Popen([sys.executable, "-c", STALL_SCRIPT], cwd=Path(__file__).resolve().parents[1],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        for process in ranks:
            assert process.stdout.readline() == "imported\n"
        for process in ranks:
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in ranks:
            assert process.stdout.readline() == "joined\n"
        ranks[1].send_signal(signal.SIGSTOP)
        start = time.monotonic()
        _, stderr = ranks[0].communicate(timeout=30)
        assert time.monotonic() - start < 20
        assert ranks[0].returncode != 0
        assert "DistributedTimeoutError: process 0 of 2 waited over 5 s" in stderr
        assert "S7_DIST_TIMEOUT" in stderr
    finally:
        for process in ranks:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.communicate()


def test_the_timeout_comes_from_the_environment_in_seconds():
    assert process_group_timeout({}) == timedelta(minutes=10)
    assert process_group_timeout({"S7_DIST_TIMEOUT": "2.5"}) == timedelta(seconds=2.5)
    for wrong in ("0", "-5", "ten", "nan", ""):
        with pytest.raises(ValueError, match=f"S7_DIST_TIMEOUT must be a positive number of seconds, not '{wrong}'"):
            process_group_timeout({"S7_DIST_TIMEOUT": wrong})


def test_device_id_goes_only_to_a_torch_that_takes_it():
    def torch_2_2_init(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None):
        """init_process_group's parameters in torch 2.2, which requirements.txt allows."""

    def torch_2_3_init(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
        """... and from torch 2.3 on."""

    device, timeout = torch.device("cuda", 1), timedelta(seconds=7)
    assert init_options(timeout, device, inspect.signature(torch_2_2_init)) == {"timeout": timeout}
    assert init_options(timeout, device, inspect.signature(torch_2_3_init)) == {"timeout": timeout,
                                                                               "device_id": device}


@pytest.mark.parametrize("sync_batchnorm, expected", [(False, torch.nn.BatchNorm2d),
                                                      (True, torch.nn.SyncBatchNorm)])
def test_batchnorm_is_synced_over_the_gpus_only_when_asked(monkeypatch, sync_batchnorm, expected):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, device_ids: module)
    net = distributed.distribute(S7Net(), torch.device("cuda", 0), sync_batchnorm=sync_batchnorm)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is expected for m in norms)


def test_sync_batchnorm_on_cpus_is_a_clear_error():
    with pytest.raises(ValueError, match="SyncBatchNorm needs GPUs"):
        distributed.distribute(S7Net(), torch.device("cpu"), sync_batchnorm=True)
