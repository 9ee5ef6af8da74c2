"""Muon (helpers.muon): orthogonalised steps for the filter banks, SGD for the rest, resumable like SGD."""
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import muon as muon_module
from helpers.checkpoints import load_resumable
from helpers.models import S7AirNet
from helpers.muon import Muon, is_filter_bank, newton_schulz_flops, orthogonalise
from helpers.optimizers import build_optimizers, muon_banks, parameter_groups
from helpers.recipes import PRESETS, Recipe
from tests.conftest import TINY_AIR, train_tiny_airnet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from launches import LaunchCounter  # noqa: E402


@pytest.mark.parametrize("shape", [(64, 576), (576, 64)])  # C2's dilated conv's bank, and its transpose
def test_orthogonalise_evens_out_the_singular_values(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    g[:, 0] *= 100  # one direction dominates the gradient, as one often does
    before = torch.linalg.svdvals(g)
    after = torch.linalg.svdvals(orthogonalise(g))
    # Every direction moves by about the same amount: a spread of 50-150x (measured) becomes under 3x.
    assert after.max() / after.min() < 3 and before.max() / before.min() > 50 and after.max() < 1.6
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    # The same directions as the gradient: a positive projection on U V^T in every singular direction.
    assert (torch.diagonal(u.T @ orthogonalise(g) @ vh.T) > 0.2).all()


def test_a_muon_step_renormalises_the_bank_then_moves_it_by_lr_times_an_orthogonal_update():
    weight = torch.nn.Parameter(3 * torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0)))
    weight.grad = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    start = weight.detach().clone()
    Muon([weight], lr=0.1).step()
    normalised = start * 4 / start.norm()  # norm sqrt(16): filters of norm 1 on average
    step = (normalised - weight.detach()).reshape(16, -1) / 0.1
    singular = torch.linalg.svdvals(step)
    assert len(singular) == 16 and 0.3 < singular.min() and singular.max() < 1.6
    # Nesterov on the first step: the update is the gradient plus momentum x the momentum buffer (= the gradient).
    assert torch.allclose(step, orthogonalise((1.6 * weight.grad).reshape(16, -1)), atol=1e-6)


def test_muon_takes_the_banks_that_mix_channels_and_sgd_everything_else():
    model = S7AirNet(TINY_AIR)
    recipe = replace(PRESETS["full"].recipe, muon_lr=0.1)
    sgd, muon = build_optimizers(model, recipe)
    banks = [name for name, p in model.named_parameters() if is_filter_bank(p)]
    # C1's conv, C2's dilated and widening convs, C3's conv, the pointwise halves of C3's and C4's separable convs
    # (not the depthwise halves, not the frozen whitening filters).
    assert banks == ["c1.2.weight", "c2.2.weight", "c2.5.weight", "c3.2.weight", "c3.5.pointwise.weight",
                     "c4.2.pointwise.weight"]
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(dict(model.named_parameters())[n]) for n in banks]
    assert muon.param_groups[0]["initial_lr"] == 0.1  # the schedule's factor times muon_lr
    trained_by_sgd = {id(p) for group in sgd.param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trained_by_sgd == trainable - {id(p) for p in muon.param_groups[0]["params"]}
    assert len(build_optimizers(model, replace(recipe, muon_lr=None))) == 1
    assert parameter_groups(model, recipe, muon_banks(model, recipe))[0]["params"] == sgd.param_groups[0]["params"]
    with pytest.raises(ValueError, match="muon_lr must be None"):
        Recipe(muon_lr=0.0)


@pytest.mark.slow
def test_training_with_muon_learns_and_resumes_the_same(tmp_path, real_data):
    data = real_data.subset(256, 10)
    recipe = replace(PRESETS["full"].recipe, epochs=2, batch_size=64, muon_lr=0.1, precision="fp32")

    def run(**options):
        return train_tiny_airnet(data, recipe, tmp_path / "last.pt", **options)

    run(stop_after_epoch=1)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert len(saved["muon"]["state"]) == 6  # a momentum buffer per filter bank, beside SGD's own state
    resumed, _ = run(resume_from=load_resumable(tmp_path / "last.pt"))
    whole, history = run()
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))
    bank = whole.c3[2].weight
    assert bank.norm().item() == pytest.approx(len(bank) ** 0.5, rel=0.2)  # held near norm sqrt(out) throughout


def test_banks_of_one_shape_are_orthogonalised_together_as_each_would_be_alone():
    g = torch.randn(3, 24, 216, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(orthogonalise(g), torch.stack([orthogonalise(m) for m in g]), atol=1e-6)
    banks = [torch.nn.Parameter(torch.randn(24, 24, 3, 3, generator=torch.Generator().manual_seed(i))) for i in (3, 4)]
    alone = [torch.nn.Parameter(bank.detach().clone()) for bank in banks]
    for params in (banks, alone):
        for i, p in enumerate(params):
            p.grad = torch.randn(24, 24, 3, 3, generator=torch.Generator().manual_seed(10 + i))
    Muon(banks, lr=0.1).step()
    for p in alone:
        Muon([p], lr=0.1).step()
    for together, separately in zip(banks, alone):
        assert torch.allclose(together, separately, atol=1e-6)


def test_a_bf16_run_orthogonalises_in_bf16_and_the_others_in_fp32():
    assert Muon([torch.nn.Parameter(torch.zeros(4, 4, 3, 3))], lr=0.1, precision="bf16").dtype == torch.bfloat16
    assert Muon([torch.nn.Parameter(torch.zeros(4, 4, 3, 3))], lr=0.1, precision="fp16").dtype == torch.float32
    g = torch.randn(64, 576, generator=torch.Generator().manual_seed(0))
    singular = torch.linalg.svdvals(orthogonalise(g, dtype=torch.bfloat16).float())
    assert 0.5 < singular.min() and singular.max() < 1.6  # the same evening-out, at bf16's precision


def test_under_fp16s_scaler_muon_unscales_and_skips_a_step_with_an_infinite_gradient():
    def bank():
        p = torch.nn.Parameter(torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)))
        p.grad = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(1))
        return p

    plain, scaled, skipped = bank(), bank(), bank()
    Muon([plain], lr=0.1).step()
    for p, found_inf in ((scaled, 0.0), (skipped, 1.0)):
        optimizer = Muon([p], lr=0.1)
        p.grad *= 1024  # what the scaler's loss scale does to the gradient
        optimizer.grad_scale, optimizer.found_inf = torch.tensor(1024.0), torch.tensor(found_inf)
        before = p.detach().clone()
        optimizer.step()
    assert torch.allclose(scaled, plain, atol=1e-6)  # unscaled, then the same step
    assert torch.equal(skipped, before) and not optimizer.state[skipped]["momentum_buffer"].any()  # no step at all


def test_the_orthogonalisation_is_counted_in_flops():
    # C1's bank of the fast preset, 24 x (24 * 3 * 3): three iterations of a 24 x 24 Gram matrix, its square and
    # the product with the 24 x 216 bank.
    assert newton_schulz_flops(torch.Size([24, 24, 3, 3])) == 3 * (2 * 24 * 24 * 216 + 2 * 24 ** 3 + 2 * 24 * 24 * 216)
    assert newton_schulz_flops(torch.Size([256, 128, 1, 1])) == 3 * (4 * 128 * 128 * 256 + 2 * 128 ** 3)


# Ops that only make a new view of existing memory (or bookkeep): no kernel runs for them on a GPU.
METADATA_OPS = {"view", "_unsafe_view", "_reshape_alias", "expand", "transpose", "t", "permute", "as_strided",
                "detach", "alias", "unbind", "unsqueeze", "squeeze", "slice", "select", "split", "narrow",
                "diagonal", "_record_function_enter_new", "_record_function_exit"}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that launch work, by name."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in METADATA_OPS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def test_a_muon_step_on_the_fast_network_launches_at_most_80_ops():
    """On a GPU the fast preset's step is bound by launches: Muon's was 223 of them (a stack, a copy and a
    zeros_like per bank, every element-wise op per shape), 82 now, each one kernel on CUDA (the test below). The
    matrix products stay per shape: 3 per Newton-Schulz iteration for each of the 5 shapes."""
    torch.manual_seed(0)
    model = S7AirNet(PRESETS["fast"].model_kwargs["widths"]).to(memory_format=torch.channels_last)
    _, muon = build_optimizers(model, replace(PRESETS["fast"].recipe, precision="bf16"))
    counts = []
    for _ in range(3):
        model(torch.rand(4, 3, 32, 32)).sum().backward()
        with OpCounter() as counter:
            muon.step()
        counts.append(counter.ops)
    assert counts[1] == counts[2]  # from the second step on, nothing is made anew
    assert counts[2]["bmm"] == 3 * 3 * 5
    assert not {"empty", "zeros_like", "stack"} & set(counts[2])
    assert sum(counts[2].values()) <= 82, counts[2]


@pytest.mark.parametrize("scaled", [False, True])  # bf16 or fp32; fp16, under the gradient scaler
def test_laid_out_as_on_cuda_every_foreach_op_of_a_muon_step_is_one_kernel(monkeypatch, scaled):
    """CUDA runs a _foreach_ op as one kernel only when the tensors at each position of its lists share sizes and
    strides (ATen's ForeachUtils.h), else one per tensor: Muon's 71 ops on the fast network launched about 108
    kernels while its work tensors were contiguous and the parameters channels_last (benchmarks/launches.py)."""
    monkeypatch.setattr(muon_module, "multi_tensor_kernels", lambda device: True)
    torch.manual_seed(0)
    model = S7AirNet(PRESETS["fast"].model_kwargs["widths"]).to(memory_format=torch.channels_last)
    _, muon = build_optimizers(model, replace(PRESETS["fast"].recipe, precision="bf16"))
    if scaled:
        muon.grad_scale, muon.found_inf = torch.tensor(1.0), torch.tensor(0.0)
    for _ in range(2):
        model(torch.rand(4, 3, 32, 32)).sum().backward()
        with LaunchCounter() as counter:
            muon.step()
    assert counter.slow == [] and counter.kernels == counter.calls
    assert counter.calls == (97 if scaled else 82)  # fp16 adds the unscaling and a torch.where per bank and buffer


def test_laid_out_as_on_cuda_muon_takes_the_same_steps_to_float_rounding(monkeypatch):
    """Channels_last work tensors make each filter's matrix row (k, k, in) instead of (in, k, k): the same
    orthogonalisation, its sums in another order (the CPU keeps the contiguous one, see multi_tensor_kernels)."""
    def stepped(like_cuda: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(muon_module, "multi_tensor_kernels", lambda device: like_cuda)
        generator = torch.Generator().manual_seed(0)
        banks = [torch.nn.Parameter(torch.randn(*shape, generator=generator).contiguous(
            memory_format=torch.channels_last)) for shape in ((16, 8, 3, 3), (32, 16, 1, 1), (16, 8, 3, 3))]
        for p in banks:
            p.grad = torch.randn(p.shape, generator=generator).contiguous(memory_format=torch.channels_last)
        muon = Muon(banks, lr=0.1)
        muon.step()
        strides = [w.stride() for w in muon.workspaces[tuple(id(p) for p in banks)].matrices]
        assert strides[0] == ((72, 1, 24, 8) if like_cuda else (72, 9, 3, 1))
        return [p.detach() for p in banks]

    for cuda_like, cpu in zip(stepped(True), stepped(False)):
        assert torch.allclose(cuda_like, cpu, atol=1e-6)
