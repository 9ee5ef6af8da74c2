"""Which arithmetic to train in, decided per device: the one place that knows what each backend can do.

- CUDA: bf16 where the GPU has it natively (compute capability 8.0+: A100, L4, H100), else fp16 with a gradient
  scaler (Colab's T4 has no native bf16, and cuDNN has no bf16 convolutions below 8.0).
- CPU: it depends on the processor (bf16 was 2x faster on an AMD Zen 4 and 1.4x slower for S7AirNet on an Intel
  Xeon without AMX), so "auto" measures a few training steps in each and keeps the faster (see helpers.train).
- MPS: fp32; autocast there raises before torch 2.5, takes bf16 from 2.6, and its gradient scaler needs 2.8.
"""
from contextlib import contextmanager, nullcontext

import torch

from .recipes import PRECISIONS

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_CANDIDATES = ("fp32", "bf16")  # fp16 runs on CPUs too, but no CPU here has fast fp16 matrix units
MPS_MINIMUM_TORCH = {"bf16": (2, 6), "fp16": (2, 8)}  # autocast with bf16; fp16 needs MPS's GradScaler too


def torch_version(text: str = torch.__version__) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.14.1+cu130'."""
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def unsupported_reason(device_type: str, precision: str, version: tuple[int, int] = None,
                       cuda_bf16_native: bool = True) -> str | None:
    """Why `precision` cannot train on this device type and torch version, or None when it can."""
    version = version or torch_version()
    if precision not in PRECISIONS or precision == "auto":
        return f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS[1:])}"
    if device_type == "mps" and precision in MPS_MINIMUM_TORCH and version < MPS_MINIMUM_TORCH[precision]:
        needed = ".".join(map(str, MPS_MINIMUM_TORCH[precision]))
        return f"{precision} on Apple MPS needs torch {needed} or newer (this is {torch.__version__}): use fp32"
    if device_type == "cuda" and precision == "bf16" and not cuda_bf16_native:
        return "this GPU has no native bfloat16 (compute capability below 8.0): use fp16 or fp32"
    return None


def fixed_choice(device: torch.device) -> str | None:
    """What "auto" means on a device where no measurement is needed; None on CPUs, where it is measured."""
    if device.type == "cuda":
        return "bf16" if cuda_bf16_native(device) else "fp16"
    if device.type == "cpu":
        return None
    return "fp32"


def cuda_bf16_native(device: torch.device) -> bool:
    """True on GPUs whose tensor cores do bf16 (not emulated through fp32)."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def fastest(step_rates: dict[str, float]) -> str:
    """The precision with the most images per second; fp32 on a tie, as it is the more exact."""
    return max(step_rates, key=lambda precision: (step_rates[precision], precision == "fp32"))


def autocast(device: torch.device, precision: str):
    """The context a training step's forward pass runs in: none at all for fp32 (nothing to construct that an
    older backend could refuse), else torch.autocast with the precision's dtype."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str):
    """fp16 gradients underflow without loss scaling; the other precisions get a scaler that does nothing."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


@contextmanager
def exact_fp32(device: torch.device):
    """Evaluate in true fp32: on Ampere and newer GPUs cuDNN convolutions default to TF32 (a 10-bit mantissa)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
