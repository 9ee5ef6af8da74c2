"""Training on several GPUs or machines with PyTorch's own engine: `torchrun ... -m helpers.train`.

torchrun starts one process per GPU (or per CPU slot) and tells each its place through WORLD_SIZE, RANK and
LOCAL_RANK; helpers.train then wraps the model in DistributedDataParallel and gives every process its slice
of each batch. Without torchrun every function here is a no-op and training runs in the one process.

Only checked on CPUs (gloo; CI has no GPU): the processes' slices of a batch are bit for bit the one-process
batch, and every process ends with bit-identical weights, which match a one-process run's to float rounding (the
gradients are summed in another order). On GPUs nccl's reduction order and cuDNN make results close, not bit-exact.

A process that stops answering (stalled, swapped out, `kill -STOP`) leaves the others waiting in their next
collective: after $S7_DIST_TIMEOUT seconds (default 600, not gloo's 30 minutes) they stop with an error.
"""
import inspect
import os
import re
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from .device import pick_device

TIMEOUT_VARIABLE = "S7_DIST_TIMEOUT"
# Ten minutes, torch's own default for nccl (gloo's is 30): far above the longest legitimate wait between two
# collectives here (rank 0 writing a checkpoint while the others start the next epoch, a slow first step).
DEFAULT_TIMEOUT_SECONDS = 600


class DistributedTimeoutError(RuntimeError):
    """Another process did not take part in a collective within the timeout: this one stops rather than hang."""


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or anything else that sets its environment variables)."""
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


@contextmanager
def distributed_session():
    """Yield this process's device, inside a process group when torchrun started us; leave the group after.

    GPUs: nccl, one GPU per process (cuda:LOCAL_RANK). CPUs: gloo. A collective that waits longer than
    $S7_DIST_TIMEOUT seconds ends the session with DistributedTimeoutError (gloo raises it in this process; nccl's
    watchdog ends the process itself, with its own message).
    """
    if not launched_by_torchrun():
        yield pick_device()
        return
    timeout = process_group_timeout(os.environ)
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", **init_options(timeout, device, inspect.signature(dist.init_process_group)))
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timeout)
    try:
        yield device
    except RuntimeError as error:
        if not re.search(r"timed? ?out", str(error), re.IGNORECASE):
            raise
        raise DistributedTimeoutError(
            f"process {rank()} of {world_size()} waited over {timeout.total_seconds():g} s for the others in a "
            f"collective: one of them stalled or died. Stopped rather than wait forever; if a step really takes "
            f"that long, raise {TIMEOUT_VARIABLE} (seconds).") from error
    finally:
        dist.destroy_process_group()


def process_group_timeout(environ) -> timedelta:
    """How long a collective may wait for the other processes: $S7_DIST_TIMEOUT seconds, else ten minutes."""
    raw = environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_SECONDS)).strip()
    if not re.fullmatch(r"\d+(\.\d*)?", raw) or float(raw) == 0:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, not {raw!r}")
    return timedelta(seconds=float(raw))


def init_options(timeout: timedelta, device: torch.device, signature: inspect.Signature) -> dict:
    """init_process_group's keywords: the timeout, and device_id only where this torch takes it (2.3 and later;
    requirements.txt allows 2.2). device_id binds nccl to this process's GPU at once, not at the first collective."""
    options = {"timeout": timeout}
    if "device_id" in signature.parameters:
        options["device_id"] = device
    return options


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


def distribute(model: torch.nn.Module, device: torch.device, sync_batchnorm: bool = False) -> torch.nn.Module:
    """The module to train with: `model` itself alone, else DistributedDataParallel around it.

    Each process normalises with the statistics of its own slice of the batch: with 256 or more images per GPU
    they are as good as the global batch's, and SyncBatchNorm (sync_batchnorm=True, GPUs only: torch's refuses
    CPU tensors) costs every BatchNorm forward a host sync, an all_gather and an all_reduce. It is converted in
    place, so the caller's `model` holds the synced layers. Per-slice statistics make a run only approximately
    equal a one-process run of the same global batch (exactly, for a model without BatchNorm).
    """
    if sync_batchnorm and device.type != "cuda":
        raise ValueError(f"SyncBatchNorm needs GPUs (torch's refuses {device.type} tensors)")
    if world_size() == 1:
        return model
    if sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                     else None)
