"""benchmarks/launches.py: CUDA's fast-path rule for _foreach_ ops, and a preset's kernels per step and epoch."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from launches import LaunchCounter, launches  # noqa: E402


def kernels_of(op, *lists) -> tuple[int, int, list]:
    with LaunchCounter() as counter:
        op(*lists)
    return counter.calls, counter.kernels, counter.slow


def banks(memory_format=torch.contiguous_format, dtype=torch.float32, shape=(8, 4, 3, 3)) -> list[torch.Tensor]:
    return [torch.ones(shape, dtype=dtype).contiguous(memory_format=memory_format) for _ in range(3)]


def test_a_foreach_op_is_one_kernel_only_when_each_position_of_its_lists_is_laid_out_alike():
    assert kernels_of(torch._foreach_add_, banks(), banks()) == (1, 1, [])
    assert kernels_of(torch._foreach_add_, banks(), banks(torch.channels_last)) == (1, 3, ["_foreach_add_"])
    assert kernels_of(torch._foreach_add_, banks(), banks(dtype=torch.bfloat16)) == (1, 3, ["_foreach_add_"])
    assert kernels_of(torch._foreach_copy_, banks(), banks(dtype=torch.bfloat16)) == (1, 1, [])  # a copy converts
    # 1x1 filters: channels_last differs only in the strides of size-1 dims, which the rule leaves free
    assert kernels_of(torch._foreach_add_, banks(shape=(8, 4, 1, 1)), banks(torch.channels_last, shape=(8, 4, 1, 1))
                      ) == (1, 1, [])
    transposed = [torch.ones(4, 8).mT for _ in range(3)]
    assert kernels_of(torch._foreach_add, transposed, [torch.ones(8, 4)] * 3)[1:] == (3, ["_foreach_add"])
    assert kernels_of(torch._foreach_mul, banks() + transposed, 2.0) == (1, 1, [])  # one list: nothing to match


def test_a_presets_kernels_per_epoch_are_its_steps_times_its_kernels_per_step_and_the_epochs_own():
    tutorial = launches("tutorial", steps=1)  # batch 4: 12,500 steps an epoch, plain SGD
    assert tutorial.muon_calls == tutorial.muon_kernels == 0 and tutorial.kernels == tutorial.calls > 20
    assert 12_500 * tutorial.kernels < tutorial.per_epoch < 12_500 * tutorial.kernels + 100


def test_the_gpu_preset_launches_a_quarter_of_the_fast_presets_kernels_an_epoch_muon_at_most_80_a_step():
    """fast-gpu exists for a GPU's launch-bound step (issue 48): at batch 512, with the whole S7AirNet's banks."""
    fast, gpu = launches("fast", steps=1), launches("fast-gpu", steps=1)
    assert 4 * gpu.per_epoch <= fast.per_epoch
    assert gpu.muon_kernels == gpu.muon_calls <= 80
