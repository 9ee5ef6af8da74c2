"""How many kernels each preset's training would launch on a GPU, counted on the CPU. A GPU step of these small
networks is bound by its launches (each a few microseconds), not by its arithmetic.

    python benchmarks/launches.py [--preset NAME ...] [--steps 2]

Every aten op that helpers.loop.train dispatches is counted, on made-up images in batches of 8, with Muon's work
tensors laid out as on CUDA (helpers.muon.multi_tensor_kernels). An op launches one kernel, a view or an
allocation none, and a _foreach_ op one when CUDA's fast path takes it (fast_path), else one per tensor of its
lists. Estimates, then: a cuDNN convolution may launch more than one kernel, and a compiled run fewer. Precision
"auto" is counted as bf16, what a GPU of compute capability 8.0 and up trains in. Per step: the difference between
runs of 2N and N steps, over N; per epoch: that times the preset's steps on CIFAR-10's 50,000 images, plus what an
epoch adds beyond its steps (its batch draws, its record), from a run of two epochs.
"""
import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from helpers import muon  # noqa: E402
from helpers.data import CIFAR10  # noqa: E402
from helpers.loop import seed_everything, train  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.recipes import PRESETS, steps_per_epoch  # noqa: E402

CIFAR10_TRAIN_IMAGES = 50_000
COUNTING_BATCH = 8  # op counts do not depend on the batch; a small one keeps the CPU's work small
# Ops that make a view of existing memory, allocate, or bookkeep: no kernel runs for them on a GPU.
NO_KERNEL = {"view", "_unsafe_view", "_reshape_alias", "expand", "transpose", "t", "permute", "as_strided", "detach",
             "alias", "unbind", "unsqueeze", "squeeze", "slice", "select", "split", "narrow", "diagonal", "empty",
             "empty_like", "empty_strided", "_record_function_enter_new", "_record_function_exit"}


def dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: its elements fill a block of memory in some order of its dims."""
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def same_layout(t: torch.Tensor, u: torch.Tensor) -> bool:
    """Equal sizes, and equal strides in every dim of more than one element (ATen's is_diff_stride)."""
    return t.shape == u.shape and all(a == b for a, b, n in zip(t.stride(), u.stride(), t.shape) if n != 1)


def tensor_lists(args) -> list[list[torch.Tensor]]:
    return [list(a) for a in args if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)]


def fast_path(name: str, args) -> bool:
    """Whether CUDA runs this _foreach_ op as one kernel (ATen's ForeachUtils.h, check_fast_path_restrictions): every
    tensor on one device and dense, one dtype per list and across lists (a copy may convert), and the tensors at
    each position of the lists laid out alike."""
    lists = tensor_lists(args)
    tensors = [t for tensors in lists for t in tensors]
    dtypes = {t.dtype for t in tensors} if name != "_foreach_copy_" else {t.dtype for t in lists[1]}
    return (len({t.device for t in tensors}) == 1 and all(dense(t) for t in tensors) and len(dtypes) == 1
            and all(same_layout(t, u) for other in lists[1:] for t, u in zip(lists[0], other)))


class LaunchCounter(TorchDispatchMode):
    """Dispatcher calls and estimated CUDA kernels, in total and inside Muon's step; the _foreach_ ops that miss
    the fast path, by name."""

    def __init__(self):
        super().__init__()
        self.calls = self.kernels = self.muon_calls = self.muon_kernels = 0
        self.slow, self.labels = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_record_function_enter_new":
            self.labels.append(args[0])
        elif name == "_record_function_exit":
            self.labels.pop()
        if name not in NO_KERNEL:
            kernels = 1
            if name.startswith("_foreach_") and not fast_path(name, args):
                kernels = len(tensor_lists(args)[0])
                self.slow.append(name)
            self.calls += 1
            self.kernels += kernels
            if any(label.endswith("Muon.step") for label in self.labels):
                self.muon_calls += 1
                self.muon_kernels += kernels
        return func(*args, **(kwargs or {}))


def made_up_data(n: int) -> CIFAR10:
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (m, 3, 32, 32), dtype=torch.uint8, generator=generator) for m in (n, 8)]
    labels = [torch.randint(0, 10, (m,), generator=generator) for m in (n, 8)]
    return CIFAR10(images[0], labels[0], images[1], labels[1])


def counted_training(preset: str, steps: int, epochs: int = 1) -> LaunchCounter:
    """The ops of a run of the preset: `epochs` epochs of `steps` steps, counted from set-up to the last record."""
    run = PRESETS[preset]
    precision = "bf16" if run.recipe.precision == "auto" else run.recipe.precision
    recipe = replace(run.recipe, epochs=epochs, batch_size=COUNTING_BATCH, precision=precision)
    generator = seed_everything(0)
    model = build_model(run.architecture, **run.model_kwargs)
    with mock.patch.object(muon, "multi_tensor_kernels", lambda device: True), LaunchCounter() as counter:
        train(model, made_up_data(steps * COUNTING_BATCH), recipe, generator, torch.device("cpu"), progress=False,
              evaluate_each_epoch=False)
    return counter


@dataclass
class Launches:
    preset: str
    calls: float  # per step
    kernels: float  # per step
    muon_calls: float
    muon_kernels: float
    per_epoch: int  # kernels of an epoch on CIFAR-10


def launches(preset: str, steps: int = 2) -> Launches:
    """The preset's counts per step, and its kernels per epoch on CIFAR-10 at its own batch."""
    once, twice, two_epochs = (counted_training(preset, steps), counted_training(preset, 2 * steps),
                               counted_training(preset, steps, epochs=2))

    def per_step(field: str) -> float:
        return (getattr(twice, field) - getattr(once, field)) / steps

    kernels = per_step("kernels")
    epoch_extra = two_epochs.kernels - once.kernels - steps * kernels
    per_epoch = round(kernels * steps_per_epoch(CIFAR10_TRAIN_IMAGES, PRESETS[preset].recipe.batch_size) + epoch_extra)
    return Launches(preset, per_step("calls"), kernels, per_step("muon_calls"), per_step("muon_kernels"), per_epoch)


def table(rows: list[Launches]) -> str:
    lines = ["| preset | batch | precision | steps/epoch | calls/step | est. kernels/step | Muon calls / kernels "
             "| est. kernels/epoch |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        recipe = PRESETS[row.preset].recipe
        precision = "bf16" if recipe.precision == "auto" else recipe.precision
        lines.append(f"| {row.preset} | {recipe.batch_size} | {precision} | "
                     f"{steps_per_epoch(CIFAR10_TRAIN_IMAGES, recipe.batch_size):,} | {row.calls:g} | "
                     f"{row.kernels:g} | {row.muon_calls:g} / {row.muon_kernels:g} | {row.per_epoch:,} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/launches.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument("--steps", type=int, default=2, help="N: runs of N and 2N steps (default 2)")
    args = parser.parse_args(argv)
    print(table([launches(preset, args.steps) for preset in args.preset]))


if __name__ == "__main__":
    main()
