"""Which arithmetic to train in, decided once before training: `decide_precision(recipe, device)`.

- CUDA: bf16 where the GPU has it natively (compute capability 8.0+: A100, L4, H100), else fp16 with a gradient
  scaler (Colab's T4 has no native bf16, and cuDNN has no bf16 convolutions below 8.0).
- CPU: from the processor's features, never from a timing, so that the same command gives the same model on the
  same machine however busy it is. bf16 where the CPU has AMX (bf16 matrix units) or is an AMD with AVX512-BF16
  (Zen 4, Zen 5), both measured faster in bf16; fp32 elsewhere: an Intel Xeon with AVX512-BF16 but no AMX trains
  slower in bf16 (benchmarks/RESULTS.md, "Processors met"). Steps of a few images stay fp32 whatever the CPU.
- MPS: fp32; autocast there raises before torch 2.5, takes bf16 from 2.6 (on macOS 14 and up), and its gradient
  scaler needs 2.8.
"""
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError
from .device import SINGLE_THREAD_STEP, cpuinfo_fields, cuda_bf16_native, intra_op_threads, mps_bf16_missing

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MPS_MINIMUM_TORCH = {"bf16": (2, 6), "fp16": (2, 8)}  # autocast with bf16; fp16 needs MPS's GradScaler too


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


def decide_precision(recipe, device: torch.device, resume_from: dict = None) -> tuple:
    """(the recipe with the precision to train in, one line saying which rule chose it), for train().

    "auto" follows the device (auto_precision); a resumed run with "auto" goes on in its own precision. Whatever
    chose it, a precision this device cannot train in is a ConfigError, resumed or not.
    """
    if recipe.precision != "auto":
        precision, line = recipe.precision, f"precision {recipe.precision} (as the recipe sets it)"
    elif resume_from is not None:
        precision = resume_from["recipe"]["precision"]
        line = f"precision auto: {precision} (the resumed run's own)"
    else:
        precision, rule = auto_precision(device, recipe.batch_size)
        line = f"precision auto: {precision} ({rule})"
    require_trainable(device, precision, resumed=resume_from is not None)
    return replace(recipe, precision=precision), line


def require_trainable(device: torch.device, precision: str, resumed: bool = False) -> None:
    """ConfigError unless `precision` is decided ("auto" is not) and this device can train in it."""
    if precision == "auto":
        raise ConfigError('the recipe\'s precision is "auto": settle it before training with '
                          'helpers.runtime.precision.decide_precision(recipe, device), or set Recipe.precision')
    reason = device_reason(device, precision)
    if reason:
        raise ConfigError(reason + (" (a resumed run may go on in another precision: --precision)" if resumed else ""))


def auto_precision(device: torch.device, batch_size: int) -> tuple[str, str]:
    """(what "auto" means on this device for steps of batch_size images, the rule that said so)."""
    if device.type == "cuda":
        if cuda_bf16_native(device):
            return "bf16", "this GPU has native bf16 (compute capability 8.0 or above)"
        return "fp16", "this GPU has no native bf16 (compute capability below 8.0): fp16 with loss scaling"
    if device.type == "cpu":
        return cpu_precision(read_cpuinfo(), batch_size)
    return "fp32", f"on {device.type}"


def cpu_precision(cpuinfo: str, batch_size: int) -> tuple[str, str]:
    """(the CPU's precision for steps of batch_size images, the rule that chose it), from /proc/cpuinfo's text.

    Decided by the recipe's batch, not by the machine's state: a step of SINGLE_THREAD_STEP images or fewer (the
    tutorial's 4) is dozens of tiny ops on one thread (device.intra_op_threads), not the large matrix products
    that bf16 units speed up, and stays in fp32, the more exact arithmetic.
    """
    if batch_size <= SINGLE_THREAD_STEP:
        return "fp32", f"a batch of {batch_size} images: steps of at most {SINGLE_THREAD_STEP} stay in fp32"
    vendor, flags = cpu_features(cpuinfo)
    if "amx_bf16" in flags:
        return "bf16", "this CPU has AMX, bf16 matrix units"
    if vendor == "AuthenticAMD" and "avx512_bf16" in flags:
        return "bf16", "an AMD CPU with AVX512-BF16 (Zen 4 or later)"
    if "avx512_bf16" in flags:
        return "fp32", "AVX512-BF16 without AMX: bf16 measured slower than fp32 on such a CPU"
    return "fp32", "no bf16 matrix units in this CPU's features"


def cpu_features(cpuinfo: str) -> tuple[str, set[str]]:
    """(vendor_id, the set of flags) of the first processor in a /proc/cpuinfo text; ("", set()) when absent."""
    fields = cpuinfo_fields(cpuinfo)
    return fields.get("vendor_id", ""), set(fields.get("flags", "").split())


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text; empty where there is none (macOS, Windows): no feature known, fp32."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return cpuinfo.read()
    except OSError:
        return ""


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


@dataclass(frozen=True)
class Precision:
    """How a run's steps compute, settled once before its first step (Precision.for_run); the loop then only uses it,
    as nanoGPT's loop uses its one `ctx`.

    autocast: the context each forward pass and loss run in (none at all for fp32: nothing for an older backend to
    refuse). scaler: fp16's loss scaling (its gradients underflow without it), a scaler that does nothing otherwise.
    whole_run(): the context the whole run goes in: true fp32 for an fp32 run (TF32 off, exact_fp32), and one
    intra-op thread for steps of a few images on a CPU (device.intra_op_threads).
    """

    name: str
    device: torch.device
    images_per_step: int
    autocast: object
    scaler: torch.amp.GradScaler

    @classmethod
    def for_run(cls, device: torch.device, precision: str, images_per_step: int, resumed: bool = False):
        """ConfigError unless `precision` is decided ("auto" is not) and this device can train in it."""
        require_trainable(device, precision, resumed)
        autocast = nullcontext() if precision == "fp32" else torch.autocast(device.type,
                                                                             dtype=AUTOCAST_DTYPES[precision])
        return cls(precision, device, images_per_step, autocast,
                   torch.amp.GradScaler(device.type, enabled=precision == "fp16"))

    @contextmanager
    def whole_run(self):
        with ExitStack() as stack:
            stack.enter_context(intra_op_threads(self.device, self.images_per_step))
            if self.name == "fp32":
                stack.enter_context(exact_fp32(self.device))
            yield
