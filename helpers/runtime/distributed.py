"""Training on several GPUs or machines with PyTorch's own engine: `torchrun ... -m helpers.train`.

torchrun starts one process per GPU (or per CPU slot) and tells each its place through WORLD_SIZE, RANK and
LOCAL_RANK; the training loop then wraps the model in DistributedDataParallel and gives every process its slice
of each batch, as even as the batch size allows. Without torchrun every function here is a no-op and training
runs in the one process.

Checked on CPUs only (gloo; CI has no GPU): the processes' slices of a batch are bit for bit the one-process
batch, and every process ends with bit-identical weights. They equal a one-process run's weights only for a
network without BatchNorm (to float rounding: the gradients are summed in another order): BatchNorm normalises
each process's slice with that slice's own statistics, which moves the weights away from the one-process run's
as training goes on (see distribute).

A process that stops answering (stalled, swapped out, `kill -STOP`) leaves the others waiting in their next
collective: after $S7_DIST_TIMEOUT seconds (default 600, not gloo's 30 minutes) they stop with an error.
"""
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError
from .device import pick_device

TIMEOUT_VARIABLE = "S7_DIST_TIMEOUT"
# Ten minutes, torch's own default for nccl (gloo's is 30): far above the longest legitimate wait between two
# collectives here (rank 0 writing a checkpoint while the others start the next epoch, a slow first step).
DEFAULT_TIMEOUT_SECONDS = 600
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600  # a year, as good as forever; 1e20 s would overflow timedelta itself


class DistributedTimeoutError(RuntimeError):
    """Another process did not take part in a collective within the timeout: this one stops rather than hang."""


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or anything else that sets its environment variables)."""
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


@contextmanager
def distributed_session(device_name: str | None = None):
    """Yield this process's device, inside a process group when torchrun started us; leave the group after.

    device_name: "cpu" (or "cuda", "mps") to choose the device kind; by default a GPU when there is one.
    GPUs: nccl, one GPU per process (cuda:LOCAL_RANK). CPUs: gloo. A collective that waits longer than
    $S7_DIST_TIMEOUT seconds ends the session with DistributedTimeoutError (gloo raises it in this process; nccl's
    watchdog ends the process itself, with its own message).
    """
    device = pick_device(device_name)
    if not launched_by_torchrun():
        yield device
        return
    timeout = process_group_timeout(os.environ)
    check_torchrun_variables(os.environ)
    require_backend(device, int(os.environ["WORLD_SIZE"]))
    try:  # joining waits for the others too: a process that never starts is a timeout like one that stalls
        if device.type == "cuda":
            device = torch.device("cuda", gpu_of_process(int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()))
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=timeout, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=timeout)
        yield device
    except RuntimeError as error:
        if not re.search(r"timed? ?out", str(error), re.IGNORECASE):
            raise
        raise DistributedTimeoutError(
            f"process {os.environ['RANK']} of {os.environ['WORLD_SIZE']} waited over {timeout.total_seconds():g} s "
            f"for the others, to join or in a collective: one of them stalled, died or never started. Stopped rather "
            f"than wait forever; if a step really takes that long, raise {TIMEOUT_VARIABLE} (seconds).") from error
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def check_torchrun_variables(environ) -> None:
    """ConfigError, in one line, for torchrun's variables set by hand and wrong: torch would raise a ValueError."""
    wrong = [f"{name}={environ[name]!r}" for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")
             if name in environ and not re.fullmatch(r"[0-9]+", environ[name])]
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
    if wrong or missing or int(environ["RANK"]) >= int(environ["WORLD_SIZE"]):
        found = ", ".join(wrong) or (f"no {' and '.join(missing)}" if missing else
                                     f"RANK {environ['RANK']} of WORLD_SIZE {environ['WORLD_SIZE']}")
        raise ConfigError(f"WORLD_SIZE, RANK and LOCAL_RANK are set, but not as torchrun sets them ({found}): "
                          f"launch with torchrun, or unset them to train in one process")


def process_group_timeout(environ) -> timedelta:
    """How long a collective may wait for the other processes: $S7_DIST_TIMEOUT seconds, else ten minutes."""
    raw = environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_SECONDS)).strip()
    if not re.fullmatch(r"\d+(\.\d*)?", raw) or not 0 < float(raw) <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, not {raw!r} (at most "
                          f"{MAX_TIMEOUT_SECONDS:,}, a year)")
    return timedelta(seconds=float(raw))


def gpu_of_process(local_rank: int, gpus: int) -> int:
    """The GPU a process trains on: its local rank, one GPU each; a clear error when there are fewer GPUs than
    processes on this machine (nccl cannot share one GPU between processes)."""
    if local_rank >= gpus:
        raise DistributedSetupError(f"torchrun started more processes on this machine than it has GPUs ({gpus}): "
                                    f"use --nproc_per_node={gpus} or fewer, or --device cpu to train on the CPU")
    return local_rank


def require_backend(device: torch.device, processes: int) -> None:
    """DistributedSetupError, before any process group is made, for several processes on a device that no
    process-group backend takes: torch registers gloo for CPU and CUDA tensors only, so DDP's first broadcast of an
    MPS model has no backend and crashes."""
    if device.type == "mps" and processes > 1:
        raise DistributedSetupError(f"torchrun started {processes} processes on Apple MPS, which no torch process "
                                    f"group can connect: train in one process (python -m helpers.train) or use "
                                    f"--device cpu")


class DistributedSetupError(RuntimeError):
    """torchrun's processes do not fit this machine's devices; the message says how to launch instead."""


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process() -> bool:
    """Only this process prints and writes files, so a run with N processes leaves one set of outputs."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over all processes, in place (the tensor itself when there is only one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def process_slice(batch_size: int) -> slice:
    """This process's slice of every batch: all of it alone; among N processes the first batch_size % N take
    one image more than the others, so that any batch size splits over any number of processes."""
    n, r = world_size(), rank()
    if batch_size < n:
        raise ConfigError(f"batch size {batch_size} is smaller than the {n} processes: each needs an image at least")
    size, extra = divmod(batch_size, n)
    start = r * size + min(r, extra)
    return slice(start, start + size + (r < extra))


def loss_weight(rows: slice, batch_size: int) -> float:
    """What this process multiplies its mean loss by: DistributedDataParallel averages the processes' gradients,
    so with slices of unequal size each mean is weighted by its part of the batch (exactly 1.0 when alone)."""
    return world_size() * (rows.stop - rows.start) / batch_size


MIN_BATCHNORM_IMAGES = 64  # fewer images per GPU than this, and BatchNorm's statistics are too noisy to trust


def distribute(model: torch.nn.Module, device: torch.device, sync_batchnorm: bool = False,
               batch_size: int | None = None) -> torch.nn.Module:
    """The module to train with: `model` itself alone, else DistributedDataParallel around it.

    Each process normalises with the statistics of its own slice of the batch, which cost no communication;
    SyncBatchNorm costs every BatchNorm forward a host sync, an all_gather and an all_reduce. It is used when asked
    (sync_batchnorm) and, on GPUs, when the global batch (batch_size) leaves some process fewer than
    MIN_BATCHNORM_IMAGES images (see needs_sync_batchnorm). torch's
    SyncBatchNorm refuses CPU tensors, so on CPUs it is an error to ask for it, and small slices keep their own
    statistics. It is converted in place, so the caller's `model` holds the synced layers.
    """
    if sync_batchnorm and device.type != "cuda":
        raise ConfigError(f"SyncBatchNorm needs GPUs (torch's refuses {device.type} tensors)")
    if world_size() == 1:
        return model
    if sync_batchnorm or (device.type == "cuda" and needs_sync_batchnorm(batch_size or 0, world_size())):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                     else None)


def needs_sync_batchnorm(batch_size: int, processes: int) -> bool:
    """Whether the smallest process slice of a batch_size batch (process_slice) is under MIN_BATCHNORM_IMAGES.

    Decided from the global batch and the number of processes, never from a process's own slice, so that every
    process decides the same: a process with SyncBatchNorm waits in collectives (an all_gather every forward, an
    all_reduce every backward) that a process with plain BatchNorm never joins, and the run would hang. Batch 127
    on 2 processes splits 64 and 63: both sync.
    """
    return batch_size // processes < MIN_BATCHNORM_IMAGES


@dataclass(frozen=True)
class Distribution:
    """This process's part in a run, settled once before its first step (Distribution.for_run): the training loop
    reads everything about the other processes from it, alone or under torchrun alike.

    rows: this process's slice of every batch (process_slice); loss_weight: what its mean loss is multiplied by
    (loss_weight); is_main: whether it prints, evaluates and writes files; processes: how many there are.
    """

    device: torch.device
    rows: slice
    loss_weight: float
    is_main: bool
    processes: int
    sync_batchnorm: bool
    batch_size: int

    @classmethod
    def for_run(cls, device: torch.device | None, batch_size: int, sync_batchnorm: bool = False):
        """device None: a GPU when there is one (pick_device)."""
        rows = process_slice(batch_size)
        return cls(device or pick_device(), rows, loss_weight(rows, batch_size), is_main_process(), world_size(),
                   sync_batchnorm, batch_size)

    @property
    def images_per_step(self) -> int:
        return self.rows.stop - self.rows.start

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train with (distribute): `model` itself alone, else DistributedDataParallel around it."""
        return distribute(model, self.device, self.sync_batchnorm, self.batch_size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over all processes (all_reduce_sum)."""
        return all_reduce_sum(tensor)

