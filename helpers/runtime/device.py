"""Which device to run on: the same code uses a GPU when there is one and the CPU otherwise."""
import ctypes
import functools
import platform
import statistics
import time
from contextlib import contextmanager

import torch


def pick_device(name: str | None = None) -> torch.device:
    """The device called `name` ("cpu", "cuda:1", ...) when given, else CUDA if available, else Apple's MPS, else
    the CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt() parameters, from <malloc.h>


SINGLE_THREAD_STEP = 8  # images per step at and below which a CPU trains on one intra-op thread


@contextmanager
def intra_op_threads(device: torch.device, images_per_step: int):
    """One intra-op thread for steps of a few images on a CPU, torch's setting otherwise; restored afterwards.

    A step of a few images is dozens of tiny ops. Split over threads, each op waits at a barrier for the others:
    alone on the machine that gains nothing, and beside another busy process each wait lasts a time slice, so the
    tutorial's batch of 4 trains several times slower on two threads than on one (benchmarks/RESULTS.md). Decided
    by the batch alone, so the same run computes the same numbers whatever else the machine is doing.
    """
    if device.type != "cpu" or images_per_step > SINGLE_THREAD_STEP:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cuda_bf16_native(device: torch.device) -> bool:
    """True on GPUs whose tensor cores do bf16, compute capability 8.0 and up (A100, L4, H100); below it bf16 is
    emulated through fp32, and cuDNN has no bf16 convolutions. (torch's is_bf16_supported says True there.)"""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory in this process instead of handing it back to the kernel.

    By default it maps every large block fresh from the kernel and unmaps it when freed, so each training step
    page-faults its activations in anew, zero-filled, thousands of times. This changes the allocator of the whole
    process, so the commands (python -m helpers.train, the benchmark) call it, and library code that calls
    train() decides for itself. The cost is the peak memory, which training holds anyway. Returns False, changing
    nothing, where the C library is not glibc (macOS, Windows, musl).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # No more mmap'd blocks, and no trimming of the heap's free top below 2 GiB.
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


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
    """The chip a speed figure belongs to: the GPU's name (an Apple chip's from torch.backends.mps.get_name where
    this torch has it: platform.processor() says only "arm"), else the CPU's as /proc/cpuinfo gives it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps" and hasattr(torch.backends.mps, "get_name"):
        return torch.backends.mps.get_name()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return cpu_name(cpuinfo.read())
    except (OSError, ValueError):
        return platform.processor() or platform.machine()


def cpuinfo_fields(cpuinfo: str) -> dict[str, str]:
    """{field: value} of the first processor in a /proc/cpuinfo text (every core repeats the same block)."""
    fields = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_name(cpuinfo: str) -> str:
    """The first processor's model name, with its family and model numbers where given: a virtual machine often
    shows only "AMD EPYC" or "Intel(R) Xeon(R) Processor", and the numbers tell the generation (AMD family 25 is
    Zen 3 or 4, 26 is Zen 5), whose speed and best precision differ."""
    fields = cpuinfo_fields(cpuinfo)
    if not fields.get("model name"):
        raise ValueError("no model name in /proc/cpuinfo")
    numbers = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"))
               if fields.get(key)]
    return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")


# The peak probe: a second or two of work on any device, where a fixed 8192^3 would keep a small GPU busy for half a
# minute. A CPU times 2048^3 products, the size of its records (DESIGN.md), so that their peaks stay comparable; a
# GPU's product doubles from 256 until it takes 2 ms, long beside a kernel launch, up to 8192. Past PROBE_SECONDS of
# timed work per dtype, no more repeats than the 3 a median needs (a slow CPU).
CPU_PROBE_SIZE = 2048
GPU_PROBE_LARGEST, GPU_PROBE_ENOUGH = 8192, 0.002
PROBE_SECONDS, MIN_PROBE_REPEATS = 0.5, 3
MPS_BF16_MACOS = (14, 0)  # MPS computes bf16 from macOS 14 (Sonoma) on


def peak_gflops(device, repeats: int = 5) -> float:
    """The machine's own limit: the best dense matmul GFLOP/s of fp32 and the half precision the device trains in
    (probe_dtypes), each the median of up to `repeats` timings (fewer past PROBE_SECONDS) at probe_matmul's size."""
    calls = 10 if device.type == "cuda" else 1  # CUDA events time 10 products; a clock, one
    best = 0.0
    for dtype in probe_dtypes(device):
        size, product = probe_matmul(device, dtype)
        timings = []
        while len(timings) < repeats and (len(timings) < MIN_PROBE_REPEATS or sum(timings) * calls < PROBE_SECONDS):
            timings.append(seconds_of(product, device, times=calls))
        best = max(best, 2 * size**3 / statistics.median(timings) / 1e9)
    return best


def probe_dtypes(device) -> list[torch.dtype]:
    """fp32, and bf16 where the device computes it (a CPU, a GPU of compute capability 8.0 and up, MPS from macOS
    14), else fp16 on a CUDA GPU, which is what it trains in."""
    if device.type == "cuda":
        return [torch.float32, torch.bfloat16 if cuda_bf16_native(device) else torch.float16]
    if device.type == "mps" and mps_bf16_missing():
        return [torch.float32]
    return [torch.float32, torch.bfloat16]


def probe_matmul(device, dtype: torch.dtype) -> tuple[int, object]:
    """(size, a function computing one size x size product in dtype on the device): CPU_PROBE_SIZE on a CPU; on a
    GPU the size doubled from 256 until one product takes GPU_PROBE_ENOUGH seconds, each size run once untimed
    first."""
    size = CPU_PROBE_SIZE if device.type == "cpu" else 256
    while True:
        product = functools.partial(torch.matmul, *probe_operands(size, device, dtype))
        product()  # warm-up: the first call picks its kernel
        if device.type == "cpu" or size >= GPU_PROBE_LARGEST or \
                seconds_of(product, device, times=1) >= GPU_PROBE_ENOUGH:
            return size, product
        size *= 2


def probe_operands(size: int, device, dtype: torch.dtype) -> list[torch.Tensor]:
    """Two random size x size matrices, made on the device itself (a GPU's made on the CPU and copied would take
    longer than its probe) from a generator of their own: the probe draws nothing from a run's random state."""
    generator = torch.Generator(device).manual_seed(0)
    return [torch.randn(size, size, device=device, dtype=dtype, generator=generator) for _ in range(2)]


def macos_version() -> tuple[int, ...] | None:
    """(major, minor) of this Mac's macOS, None elsewhere."""
    text = platform.mac_ver()[0]
    return tuple(int(part) for part in text.split(".")[:2]) if text else None


def mps_bf16_missing() -> str | None:
    """Why Apple's MPS cannot compute bf16 on this Mac, or None: it needs macOS 14 (torch's MPSGraphSonomaOps).
    None off macOS, where there is no MPS to ask."""
    version = macos_version()
    if version is None or version >= MPS_BF16_MACOS:
        return None
    return f"bf16 on Apple MPS needs macOS 14 or newer (this is macOS {'.'.join(map(str, version))}): use fp32"


def seconds_of(work, device, times: int = 10) -> float:
    """Seconds one call of work() takes: timed with CUDA events over `times` calls on a GPU, by the clock once
    elsewhere (a CPU's matmul of 2048^3 takes tens of milliseconds). The events go on the device's own stream:
    without one they record on the current device's, cuda:0's unless set, which would time an idle GPU."""
    if device.type != "cuda":
        synchronize(device)
        start = time.perf_counter()
        work()
        synchronize(device)
        return time.perf_counter() - start
    stream = torch.cuda.current_stream(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    for _ in range(times):
        work()
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / 1000 / times
