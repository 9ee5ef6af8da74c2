"""S7AirNet, the full preset's network: every S7 rule, whitening set from data, and airbench's recipe parts."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checker.receptive_field import empirical_rf, final_rf, rf_table
from helpers.checker.spec import check_s7, format_checks
from helpers.checkpoints import load_model, save_checkpoint
from helpers.convs import conv3x3
from helpers.data import to_float, train_batches
from helpers.evaluation import predict
from helpers.loop import seed_everything, train
from helpers.models import PatchWhitening, S7AirNet, S7Net, build_model, count_parameters, identity_init
from helpers.optimizers import parameter_groups
from helpers.recipes import PRESETS, Recipe, resolve
from helpers.runtime.device import pick_device
from helpers.runtime.precision import decide_precision
from helpers.train import main
from tests.conftest import TINY_AIR

CPU = torch.device("cpu")


def test_s7airnet_meets_every_rule_with_fewer_than_a_million_parameters():
    model = S7AirNet()
    checks = check_s7(model, 93.0, device=CPU)
    assert not any(check.failed for check in checks), format_checks(checks)
    assert count_parameters(model) == 928_824
    assert final_rf(rf_table(model)) == 55 == empirical_rf(model, (3, 128, 128))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_frozen_parameters_count_towards_the_limit():
    model = S7AirNet()
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 24 * 3 * 2 * 2 + (64 + 64 + 256 + 256 + 256 + 256)  # whitening filters + BatchNorm scales
    assert count_parameters(model) == frozen + sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_build_model_names_the_architectures():
    assert type(build_model("S7AirNet", widths=TINY_AIR)) is S7AirNet and type(build_model("S7Net")) is S7Net
    with pytest.raises(ValueError, match="unknown architecture 'ResNet': choose from TutorialNet, S7Net, S7AirNet"):
        build_model("ResNet")


def test_patch_whitening_decorrelates_the_patches_it_was_fitted_on(real_data):
    layer = PatchWhitening()
    images = S7AirNet().normalize(to_float(real_data.train_images[:1000]))
    layer.fit(images)
    assert torch.equal(layer.weight[12:], -layer.weight[:12]) and not layer.weight.requires_grad
    outputs = F.conv2d(images, layer.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = outputs.T @ outputs / len(outputs)
    off_diagonal = covariance - torch.diag(covariance.diag())
    assert off_diagonal.abs().max() < 1e-3
    # lambda / (lambda + eps): the strong directions come out at unit variance, eps damps only the weakest
    assert (covariance.diag() < 1 + 1e-4).all() and (covariance.diag()[:8] > 0.9).all()


def test_identity_init_passes_the_input_channels_through():
    conv = identity_init(conv3x3(4, 6))
    x = torch.rand(1, 4, 5, 5)
    assert torch.equal(conv(x)[:, :4], x)


def test_alternating_flip_shows_each_image_mirrored_every_other_epoch():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16)
    for epoch in (1, 2):
        (x, y), = train_batches(images, labels, 16, generator, translate=0, alternate_flip_epoch=epoch)
        for image, index in zip(x, y.tolist()):
            original = to_float(images[index])
            assert torch.equal(image, original.flip(-1) if (index + epoch) % 2 else original)


def test_batchnorm_shifts_learn_faster_with_the_same_decay_and_frozen_weights_stay_out():
    model, recipe = S7AirNet(TINY_AIR), replace(PRESETS["full"].recipe, muon_lr=None)  # SGD trains every weight
    others, norms = parameter_groups(model, recipe, banks=[])
    batchnorm_shifts = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [id(p) for p in norms["params"]] == [id(p) for p in batchnorm_shifts]
    assert norms["initial_lr"] == 64 * others["initial_lr"] == 64 * recipe.lr
    assert norms["weight_decay"] * 64 == pytest.approx(others["weight_decay"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in others["params"] + norms["params"]} == trainable
    assert len(trainable) < len(list(model.parameters()))  # the frozen whitening and BN scales are left out
    plain = parameter_groups(S7Net(), Recipe(), banks=[])  # Recipe()'s defaults: one learning rate for all
    assert [group["initial_lr"] for group in plain] == [Recipe().lr] * 2


def test_full_preset_trains_s7airnet_with_whitening_from_the_data(real_data):
    data = real_data.subset(1024, 200)
    seed_everything(0)
    model = S7AirNet(TINY_AIR)
    # 48 steps of 64 images: a tiny run needs a bigger step than the preset's lr, which is matched to its own batch.
    recipe = replace(PRESETS["full"].recipe, epochs=3, batch_size=64, lr=0.6, precision="fp32")
    history = train(model, data, recipe, device=CPU, progress=False)
    assert history[-1]["loss"] < history[0]["loss"] - 0.1
    assert history[-1]["test_acc"] > 20  # chance is 10%
    fitted = PatchWhitening()
    fitted.fit(model.normalize(to_float(data.train_images[:5000])))  # what init_from_data took
    assert torch.allclose(model.c1[0].weight, fitted.weight)  # set from the data, then never trained
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))


def test_checkpoints_name_their_architecture(tmp_path, real_data):
    model = S7AirNet(TINY_AIR).eval()
    path = save_checkpoint(model, tmp_path / "air.pt")
    assert torch.load(path, weights_only=True)["architecture"] == "S7AirNet"
    loaded = load_model(path)
    images = real_data.test_images[:50]
    assert type(loaded) is S7AirNet and torch.equal(predict(loaded, images), predict(model, images))


@pytest.mark.slow  # several seconds: the quick tier keeps to about two minutes
def test_command_line_full_preset_trains_and_saves_s7airnet(tmp_path, real_data_root, capsys):
    test_acc = main(["--preset", "full", "--quick", "--data", str(real_data_root), "--out", str(tmp_path)])
    assert "S7AirNet: 928,824 parameters" in capsys.readouterr().out
    assert type(load_model(tmp_path / "s7airnet.pt")) is S7AirNet
    saved = torch.load(tmp_path / "s7airnet.pt", weights_only=True)  # the accuracy printed is the one it carries
    assert saved["test_acc"] == round(test_acc, 2)
    assert saved["recipe"]["precision"] == auto_precision("full", pick_device())  # fp16 on a T4


def auto_precision(preset: str, device: torch.device) -> str:
    """What "auto" trains the preset's quick run in on this device: fp16 on a T4, bf16 or fp32 elsewhere."""
    return decide_precision(resolve(preset, quick=True).recipe, device)[0].precision


def test_on_a_gpu_without_native_bf16_the_full_preset_is_expected_in_fp16(monkeypatch):
    """A T4 (compute capability 7.5): the test above expects what decide_precision says there, fp16."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert auto_precision("full", torch.device("cuda")) == "fp16"


def test_whitening_is_fitted_whatever_device_the_model_is_already_on(real_data):
    """A user may move the model to a GPU before train(): the statistics are computed on the CPU all the same.
    The meta device stands in for the GPU (its tensors hold no data, so any CPU arithmetic with them fails)."""
    model = S7AirNet(TINY_AIR).to("meta")
    model.init_from_data(real_data.train_images[:500])  # the buffers on meta are not used
    assert model.c1[0].weight.device.type == "meta"
    on_cpu = S7AirNet(TINY_AIR)
    on_cpu.init_from_data(real_data.train_images[:500])
    assert on_cpu.c1[0].weight.abs().sum() > 0
