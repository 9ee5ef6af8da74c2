"""Training on several GPUs or machines with PyTorch's own engine: `torchrun ... -m helpers.train`.

torchrun starts one process per GPU (or per CPU slot) and tells each its place through WORLD_SIZE, RANK and
LOCAL_RANK; helpers.train then wraps the model in DistributedDataParallel and gives every process its slice
of each batch. Without torchrun every function here is a no-op and training runs in the one process.
"""
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from .device import pick_device


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or anything else that sets its environment variables)."""
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


@contextmanager
def distributed_session():
    """Yield this process's device, inside a process group when torchrun started us; leave the group after.

    GPUs: nccl, one GPU per process (cuda:LOCAL_RANK). CPUs: gloo.
    """
    if not launched_by_torchrun():
        yield pick_device()
        return
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


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
