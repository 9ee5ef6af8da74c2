"""Which device to run on: the same code uses a GPU when there is one and the CPU otherwise."""
import torch


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
        return f"GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    if device.type == "mps":
        return f"GPU: Apple MPS, torch {torch.__version__}"
    return f"no GPU: running on CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"
