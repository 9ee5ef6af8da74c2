"""Several processes (DistributedDataParallel, gloo on CPUs, loopback only) train as one process would."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from helpers import data as data_module
from helpers.checkpoints import load_model
from helpers.data import CIFAR10, train_batches
from helpers.errors import ConfigError
from helpers.loop import seed_everything, train
from helpers.models import S7Net, TutorialNet
from helpers.recipes import Recipe
from helpers.runtime import distributed
from helpers.runtime.distributed import distributed_session, process_group_timeout
from helpers.train import main as cli_main
from tests.conftest import exits_with, free_port, made_up_images

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
    with distributed_session("cpu"):  # gloo and CPU tensors, also on a machine with GPUs
        model, history = run_training()
    torch.save({"state_dict": model.state_dict(), "history": history, "batch_sizes": model.batch_sizes},
               out / f"rank{rank}.pt")


@pytest.mark.slow
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
    for (x, y), (x0, y0), (x1, y1) in zip(whole, first, second):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))


@pytest.mark.parametrize("alternate_flip_epoch", [None, 3])
def test_each_process_augments_only_its_slice_and_gets_the_slice_of_the_augmented_batch(monkeypatch,
                                                                                        alternate_flip_epoch):
    """Three faked processes, batch 127: each cuts and augments its 43 or 42 images, not the whole batch, and they
    are exactly its slice of what one process makes of the whole batch (the draws are the whole batch's)."""
    images, labels = torch.as_tensor(made_up_images(300, seed=3)[0]), torch.arange(300)
    augmented = []
    augment = data_module.apply_augmentation
    monkeypatch.setattr(data_module, "apply_augmentation",
                        lambda x, *args: augmented.append(len(x)) or augment(x, *args))

    def batches(part):
        return list(train_batches(images, labels, 127, torch.Generator().manual_seed(7), translate=2, flip=True,
                                  part=part, alternate_flip_epoch=alternate_flip_epoch))

    whole = batches(slice(None))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    for r, size in enumerate([43, 42, 42]):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        share = distributed.process_slice(127)
        augmented.clear()
        for (x, y), (x_all, y_all) in zip(batches(share), whole, strict=True):
            assert torch.equal(x, x_all[share]) and torch.equal(y, y_all[share])
        assert augmented == [size, size]


@pytest.mark.parametrize("batch, processes, sizes", [(64, 3, [22, 21, 21]), (250, 4, [63, 63, 62, 62]),
                                                     (128, 8, [16] * 8), (512, 1, [512])])
def test_any_batch_splits_over_any_number_of_processes_and_the_losses_weigh_by_share(monkeypatch, batch, processes,
                                                                                      sizes):
    monkeypatch.setattr(distributed, "world_size", lambda: processes)
    shares = []
    for r in range(processes):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares.append(distributed.process_slice(batch))
    assert [s.stop - s.start for s in shares] == sizes
    assert [i for s in shares for i in range(s.start, s.stop)] == list(range(batch))  # the whole batch, once
    # DDP averages the processes' gradients (1 / processes each) of their weighted mean losses (1 / slice size
    # each image): every image of the batch then counts 1 / batch, as in one process's mean over the whole batch.
    for s in shares:
        assert distributed.loss_weight(s, batch) / processes / (s.stop - s.start) == pytest.approx(1 / batch)
    if processes == 1:
        assert distributed.loss_weight(shares[0], batch) == 1.0  # exactly: one process trains as it always did


def test_a_batch_smaller_than_the_processes_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 8)
    with pytest.raises(ConfigError, match="batch size 4 is smaller than the 8 processes"):
        train(TutorialNet(), small_data(), replace(RECIPE, batch_size=4), device=torch.device("cpu"), progress=False)


@pytest.mark.slow
def test_torchrun_trains_with_two_processes_and_only_rank_0_writes(tmp_path, real_data_root):
    """Two epochs of the fast preset, on the CPU (gloo) also where there are GPUs."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "helpers.train", "--quick", "--widths", "8", "16", "32",
               "48", "--epochs", "2", "--device", "cpu", "--data", str(real_data_root), "--out", str(tmp_path)]
    result = subprocess.run(command, env={**os.environ, **loopback_env()}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 processes (DistributedDataParallel)" in result.stdout
    assert result.stdout.count("final test accuracy") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "history.json", "last.pt", "s7airnet.pt"]
    assert load_model(tmp_path / "s7airnet.pt").model_kwargs["widths"] == [8, 16, 32, 48]


# Each rank imports, waits for "go" (so the 5 s timeout does not also time the other's import), joins, then sums.
STALL_SCRIPT = """
import sys, torch
from helpers.runtime.distributed import all_reduce_sum, distributed_session
print("imported", flush=True)
sys.stdin.readline()
with distributed_session("cpu"):
    print("joined", flush=True)
    while True:
        all_reduce_sum(torch.ones(1))
"""


@pytest.mark.slow
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


def test_more_processes_than_gpus_is_a_clear_error_not_a_crash_on_a_missing_gpu():
    assert distributed.gpu_of_process(1, 2) == 1
    with pytest.raises(distributed.DistributedSetupError, match="more processes on this machine than it has GPUs "
                                                               r"\(1\): use --nproc_per_node=1 or fewer"):
        distributed.gpu_of_process(1, 1)


def synced_on_every_rank(monkeypatch, batch: int, processes: int, sync_batchnorm: bool = False) -> list[bool]:
    """Whether each of `processes` faked ranks converts S7Net's BatchNorms to SyncBatchNorm, on a (faked) GPU."""
    monkeypatch.setattr(distributed, "world_size", lambda: processes)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, device_ids: module)
    synced = []
    for r in range(processes):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        net = distributed.distribute(S7Net(), torch.device("cuda", r), sync_batchnorm, batch_size=batch)
        kinds = {type(m) for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        assert len(kinds) == 1
        synced.append(kinds == {torch.nn.SyncBatchNorm})
    return synced


@pytest.mark.parametrize("batch, processes, shares", [(127, 2, [64, 63]), (255, 4, [64, 64, 64, 63]),
                                                      (190, 3, [64, 63, 63])])
def test_every_process_makes_the_same_syncbatchnorm_choice_from_the_global_batch(monkeypatch, batch, processes,
                                                                                 shares):
    """Slices of 64 and 63 images: one rank's own slice would keep BatchNorm, another's would sync, and the synced
    ranks would wait forever in collectives the others never join. The smallest slice decides for all."""
    assert synced_on_every_rank(monkeypatch, batch, processes) == [True] * processes
    sizes = []
    for r in range(processes):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        share = distributed.process_slice(batch)
        sizes.append(share.stop - share.start)
    assert sizes == shares  # the slices straddle the threshold, so a per-slice choice would split the ranks


@pytest.mark.parametrize("sync_batchnorm, batch, processes, expected", [(False, 512, 2, False), (True, 512, 2, True),
                                                                        (False, 128, 2, False),
                                                                        (False, 128, 3, True),
                                                                        (False, 250, 4, True)])
def test_batchnorm_is_synced_over_the_gpus_when_asked_or_when_a_slice_is_small(monkeypatch, sync_batchnorm, batch,
                                                                               processes, expected):
    """fast (batch 128) syncs from 3 GPUs on, full (batch 250) from 4."""
    assert synced_on_every_rank(monkeypatch, batch, processes, sync_batchnorm) == [expected] * processes


def test_sync_batchnorm_on_cpus_is_a_clear_error():
    with pytest.raises(ValueError, match="SyncBatchNorm needs GPUs"):
        distributed.distribute(S7Net(), torch.device("cpu"), sync_batchnorm=True)


def test_several_processes_on_mps_are_refused_in_one_line_before_any_process_group(monkeypatch):
    """torch registers gloo for CPU and CUDA tensors only: DDP's broadcast of an MPS model would crash."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: pytest.fail("made a process group"))
    with pytest.raises(distributed.DistributedSetupError) as refused:
        with distributed_session("mps"):
            pytest.fail("trained")
    assert str(refused.value) == ("torchrun started 2 processes on Apple MPS, which no torch process group can "
                                  "connect: train in one process (python -m helpers.train) or use --device cpu")
    distributed.require_backend(torch.device("mps"), 1)  # one process needs no backend: DDP is not used
    distributed.require_backend(torch.device("cpu"), 2)


@pytest.mark.parametrize("variables, found", [
    ({"WORLD_SIZE": "abc", "RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE='abc'"),
    ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, "no MASTER_ADDR and MASTER_PORT"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     "RANK 2 of WORLD_SIZE 2"),
])
def test_torchruns_variables_set_wrong_by_hand_are_one_line_before_anything_runs(monkeypatch, capsys, variables,
                                                                                   found):
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    err = exits_with(cli_main, ["--epochs", "1", "--out", "unused"], capsys)
    assert f"WORLD_SIZE, RANK and LOCAL_RANK are set, but not as torchrun sets them ({found}): launch with torchrun" \
           in err


def test_a_second_process_that_never_starts_is_the_one_line_timeout(monkeypatch):
    """Joining the group waits for the others as a collective does, and for as long."""
    for name, value in {**loopback_env(), "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "RANK": "0",
                        "LOCAL_RANK": "0", "S7_DIST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(distributed.DistributedTimeoutError, match="process 0 of 2 waited over 2 s for the others, "
                                                                  "to join"):
        with distributed_session("cpu"):
            pytest.fail("joined a group of two alone")
    assert time.monotonic() - started < 15 and not torch.distributed.is_initialized()
