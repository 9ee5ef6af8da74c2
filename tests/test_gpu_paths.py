"""The CUDA and MPS paths, checked where CI runs (a CPU): what a GPU would pay for or refuse is counted here.

- fp16 (Colab's T4): no host sync inside the step loop, though GradScaler reads each optimiser's inf flag back to
  the host unless the optimiser takes it itself.
- MPS has no float64: no tensor of that type may be made on the training device.
- TF32: evaluation switches it off through torch's new flags, whose use makes reading the legacy ones raise.
"""
from dataclasses import replace

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.data import CIFAR10
from helpers.loop import train
from helpers.models import PatchWhitening, S7AirNet, S7Net
from helpers.optimizers import build_optimizers
from helpers.recipes import PRESETS
from helpers.runtime.precision import exact_fp32
from tests.conftest import TINY_AIR, made_up_images

CPU = torch.device("cpu")


def made_up_data(n: int) -> CIFAR10:
    images, labels = made_up_images(n, seed=0)
    return CIFAR10(torch.as_tensor(images), torch.as_tensor(labels), torch.as_tensor(images[:16]),
                   torch.as_tensor(labels[:16]))


class Recorder(TorchDispatchMode):
    """Counts the calls of one aten op, and lists the ops whose output is float64."""

    def __init__(self, counted):
        super().__init__()
        self.counted, self.count, self.float64, self.paused = counted, 0, [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.paused:
            self.count += func is self.counted
            if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in pytree.tree_leaves(out)):
                self.float64.append(str(func))
        return out


def host_syncs(steps: int, precision: str) -> int:
    """Reads of a device value by the host (`.item()`, `.tolist()`: aten._local_scalar_dense) in one epoch of
    `steps` steps of the fast preset's recipe (SGD and Muon) on a tiny S7AirNet."""
    recipe = replace(PRESETS["fast"].recipe, batch_size=32, precision=precision)
    with Recorder(torch.ops.aten._local_scalar_dense.default) as recorder:
        train(S7AirNet(TINY_AIR), made_up_data(32 * steps), recipe, device=CPU, progress=False,
              evaluate_each_epoch=False)
    return recorder.count


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_no_host_sync_inside_the_step_loop(precision):
    """Twice the steps, the same number of host reads: none of them is per step (they all come at the epoch's end)."""
    assert host_syncs(4, precision) == host_syncs(8, precision)


@pytest.mark.slow
def test_the_count_sees_a_sync_per_step_where_there_is_one(monkeypatch):
    """The check above can fail: GradScaler's own path for an optimiser that does not take the inf flag itself
    reads it once per step."""
    from helpers import muon
    monkeypatch.setattr(muon.Muon, "_step_supports_amp_scaling", False)
    assert host_syncs(8, "fp16") > host_syncs(4, "fp16")


@pytest.mark.slow
def test_no_float64_tensor_on_the_training_device(monkeypatch):
    """S7AirNet's whitening is fitted in float64 on purpose, on the CPU whatever the device; nothing else may be."""
    recorder = Recorder(None)
    fit = PatchWhitening.fit

    def fit_unrecorded(self, images):
        recorder.paused = True
        try:
            fit(self, images)
        finally:
            recorder.paused = False

    monkeypatch.setattr(PatchWhitening, "fit", fit_unrecorded)
    with recorder:
        for model, preset in ((S7AirNet(TINY_AIR), "fast"), (S7Net((8, 16, 32, 48)), "s7net")):
            recipe = replace(PRESETS[preset].recipe, epochs=2, batch_size=32, precision="fp32")
            train(model, made_up_data(96), recipe, device=CPU, progress=False)
    assert not recorder.float64, f"float64 made on the training device by {sorted(set(recorder.float64))}"


def test_the_float64_check_sees_what_mps_would_refuse():
    with Recorder(None) as recorder:
        torch.ones(3).double()
    assert recorder.float64


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch before the new flags")
def test_exact_fp32_works_with_torchs_new_tf32_flags_and_restores_them():
    """After torch.backends.cuda.matmul.fp32_precision = "tf32" (the new API), reading the legacy allow_tf32 raises
    "mix of the legacy and new APIs": evaluation must not read them. The flags are global, so no GPU is needed."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    try:
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        with exact_fp32(torch.device("cuda")):
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def skipped_then_real_step(sgd, p, monkeypatch) -> torch.Tensor:
    """p after a first step that fp16's scaler skips (found_inf set, the gradient infinite), then a real one, on the
    CPU's fused SGD kernel; memory fresh from torch.empty_like holds 12345 here, as it may hold anything."""
    monkeypatch.setattr(torch, "empty_like", lambda t, **kwargs: torch.full_like(t, 12345.0))
    p.grad = torch.full_like(p, float("inf"))
    sgd.grad_scale, sgd.found_inf = None, torch.tensor(1.0)
    before = p.detach().clone()
    sgd.step()
    assert torch.equal(p, before)  # the skipped step changed nothing
    p.grad = torch.full_like(p, 0.5)
    sgd.found_inf = torch.tensor(0.0)
    sgd.step()
    return p.detach()


def test_fp16s_fused_sgd_after_a_skipped_first_step_steps_from_zero_momentum(monkeypatch):
    """fp16 builds a fused SGD with zeroed buffers: the real step after a skipped one is the first step it would
    have been, p - lr * (g + momentum * g) with Nesterov."""
    model = torch.nn.Linear(3, 2, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    recipe = replace(PRESETS["s7net"].recipe, precision="fp16", weight_decay=0.0)
    sgd = build_optimizers(model, recipe)[0]
    assert sgd.param_groups[0]["fused"]
    after = skipped_then_real_step(sgd, model.weight, monkeypatch)
    lr, momentum = recipe.lr, recipe.momentum
    assert torch.allclose(after, torch.full_like(after, 1.0 - lr * (0.5 + momentum * 0.5)))


def test_the_skipped_step_check_sees_torchs_own_garbage(monkeypatch):
    """The check above can fail: torch's fused SGD as built without zeroed buffers steps with 12345 x momentum."""
    p = torch.nn.Parameter(torch.ones(2, 3))
    sgd = torch.optim.SGD([p], lr=0.4, momentum=0.9, nesterov=True, fused=True)
    after = skipped_then_real_step(sgd, p, monkeypatch)
    assert (after < -1000).all()


def test_an_fp32_run_trains_in_true_fp32_and_restores_torchs_tf32_settings(monkeypatch):
    """torch 2.14 lets cuDNN convolutions use TF32 by default on Ampere and newer: "fp32" must mean fp32 for the whole
    run. The flags are global, so the training loop is run here on the CPU as if its device were a GPU."""
    if not hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        pytest.skip("torch before the new flags")
    from helpers.runtime import precision
    as_if_cuda = precision.exact_fp32
    monkeypatch.setattr(precision, "exact_fp32", lambda device: as_if_cuda(torch.device("cuda")))
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    seen = []

    class Recording(S7Net):
        def forward(self, x):
            seen.append((conv.fp32_precision, matmul.fp32_precision))
            return super().forward(x)

    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"
        for chosen in ("fp32", "bf16"):
            seen.clear()
            train(Recording((8, 16, 32, 48)), made_up_data(64), replace(PRESETS["s7net"].recipe, epochs=1,
                  batch_size=32, precision=chosen), device=CPU, progress=False, evaluate_each_epoch=False)
            assert set(seen) == {("ieee", "ieee") if chosen == "fp32" else ("tf32", "tf32")}
            assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def test_under_torchrun_only_the_first_process_evaluates(monkeypatch):
    from helpers import loop
    from helpers.runtime import distributed
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    monkeypatch.setattr(loop, "evaluate", lambda *args, **kwargs: pytest.fail("evaluated"))
    history = train(S7Net((8, 16, 32, 48)), made_up_data(64), replace(PRESETS["s7net"].recipe, epochs=1,
                    batch_size=32, precision="fp32"), device=CPU, progress=False)
    assert history[0]["test_acc"] is None
