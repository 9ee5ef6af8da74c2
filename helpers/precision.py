"""Which arithmetic to train in, per device: the one place that knows what each backend can do.

- CUDA: bf16 where the GPU has it natively (compute capability 8.0+: A100, L4, H100), else fp16 with a gradient
  scaler (Colab's T4 has no native bf16, and cuDNN has no bf16 convolutions below 8.0).
- CPU: it depends on the processor (bf16 matrix units are fast on some, emulated and slower on others), so "auto"
  measures training steps in each (helpers.training) and remembers the answer per processor here, so that a busy
  moment of the machine cannot flip it from one run to the next.
- MPS: fp32; autocast there raises before torch 2.5, takes bf16 from 2.6 (on macOS 14 and up), and its gradient
  scaler needs 2.8.
"""
import json
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .device import cuda_bf16_native, mps_bf16_missing

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_CANDIDATES = ("fp32", "bf16")  # fp16 runs on CPUs too, but none has fast fp16 matrix units
BF16_MARGIN = 1.10  # on a CPU bf16 must train this much faster than fp32 to be chosen: fp32 is the more exact
MPS_MINIMUM_TORCH = {"bf16": (2, 6), "fp16": (2, 8)}  # autocast with bf16; fp16 needs MPS's GradScaler too
CACHE_VARIABLE = "S7_PRECISION_CACHE"


def torch_version(text: str = torch.__version__) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.14.1+cu130'."""
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def unsupported_reason(device_type: str, precision: str, version: tuple[int, int] = None,
                       cuda_bf16_native: bool = True) -> str | None:
    """Why `precision` cannot train on this device type and torch version, or None when it can."""
    version = version or torch_version()
    if precision not in AUTOCAST_DTYPES and precision != "fp32":
        return f"unknown precision {precision!r}: choose from bf16, fp16, fp32"
    if device_type == "mps" and precision in MPS_MINIMUM_TORCH and version < MPS_MINIMUM_TORCH[precision]:
        needed = ".".join(map(str, MPS_MINIMUM_TORCH[precision]))
        return f"{precision} on Apple MPS needs torch {needed} or newer (this is {torch.__version__}): use fp32"
    if device_type == "mps" and precision == "bf16" and (reason := mps_bf16_missing()):
        return reason
    if device_type == "cuda" and precision == "bf16" and not cuda_bf16_native:
        return "this GPU has no native bfloat16 (compute capability below 8.0): use fp16 or fp32"
    return None


def device_reason(device: torch.device, precision: str) -> str | None:
    """unsupported_reason for this very device."""
    native = device.type != "cuda" or cuda_bf16_native(device)
    return unsupported_reason(device.type, precision, cuda_bf16_native=native)


def fixed_choice(device: torch.device) -> str | None:
    """What "auto" means on a device where no measurement is needed; None on CPUs, where it is measured."""
    if device.type == "cuda":
        return "bf16" if cuda_bf16_native(device) else "fp16"
    if device.type == "cpu":
        return None
    return "fp32"


def fastest(step_rates: dict[str, float]) -> str:
    """bf16 when it trains at least BF16_MARGIN times as many images per second as fp32, else fp32: a
    measurement's noise alone must not move a run off the more exact arithmetic."""
    return "bf16" if step_rates["bf16"] >= BF16_MARGIN * step_rates["fp32"] else "fp32"


def cache_path() -> Path:
    """Where measured choices are remembered: $S7_PRECISION_CACHE, else ~/.cache/s7/precision.json."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "s7" / "precision.json")


def remembered(key: str) -> dict | None:
    """The choice measured earlier for this processor and run ({"choice", "rates"}), or None."""
    try:
        return json.loads(cache_path().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def remember(key: str, entry: dict) -> None:
    """Add a measured choice to the cache (written atomically; a cache that cannot be written is skipped)."""
    path = cache_path()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**(known if isinstance(known, dict) else {}), key: entry}, indent=1))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


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
    """Evaluate in true fp32: on Ampere and newer GPUs cuDNN convolutions default to TF32 (a 10-bit mantissa).

    Through torch's new fp32_precision settings where this torch has them: once anything has set those, reading
    the legacy allow_tf32 flags raises.
    """
    if device.type != "cuda":
        yield
        return
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        flags = [(torch.backends.cuda.matmul, "fp32_precision"), (torch.backends.cudnn.conv, "fp32_precision")]
        exact = "ieee"
    else:
        flags, exact = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")], False
    saved = [getattr(owner, name) for owner, name in flags]
    for owner, name in flags:
        setattr(owner, name, exact)
    try:
        yield
    finally:
        for (owner, name), value in zip(flags, saved):
            setattr(owner, name, value)


def training_arithmetic(device: torch.device, precision: str):
    """The context a whole training run goes in: true fp32 for an fp32 run (exact_fp32), as torch 2.14 lets cuDNN
    convolutions use TF32 by default on Ampere and newer GPUs; the other precisions keep torch's settings."""
    return exact_fp32(device) if precision == "fp32" else nullcontext()
