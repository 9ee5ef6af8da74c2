"""Which device to run on: the same code uses a GPU when there is one and the CPU otherwise."""
import platform

import torch

from .precision import cuda_bf16_native


def pick_device() -> torch.device:
    """CUDA if available, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """One line for the notebook: which GPU, or a clear statement that it runs on the CPU."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        bf16 = "native bf16" if cuda_bf16_native(device) else "no native bf16 (fp16 is used)"
        return (f"GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB, compute capability {props.major}."
                f"{props.minor}, {bf16}), torch {torch.__version__}")
    if device.type == "mps":
        return f"GPU: Apple MPS, torch {torch.__version__}"
    return f"no GPU: running on CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read afterwards counts it (CUDA and MPS run ahead)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def processor_name(device: torch.device) -> str:
    """The chip a speed figure belongs to: the GPU's name, else the CPU's model name as lscpu shows it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
