import pytest
import torch
from torch import nn

from helpers.convs import DepthwiseSeparableConv2d
from helpers.models import CIFAR10_MEAN, CIFAR10_STD, GlobalAvgPool2d, S7AirNet, S7Net, TutorialNet, count_parameters


def test_tutorial_net_is_the_pytorch_tutorial_network():
    model = TutorialNet()
    assert count_parameters(model) == 62_006
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    assert [type(m) for m in model.children()].count(nn.Linear) == 3


def test_s7net_defaults_are_the_assignment_model():
    model = S7Net()
    assert count_parameters(model) == 671_722 < 1_000_000
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert any(isinstance(m, DepthwiseSeparableConv2d) for m in model.modules())
    assert any(isinstance(m, nn.Conv2d) and m.dilation[0] == 2 for m in model.modules())
    assert isinstance(model.output[0], nn.AdaptiveAvgPool2d)


def test_widths_scale_the_same_class_down_and_up():
    small, big = S7Net(widths=(8, 16, 32, 48)), S7Net(widths=(48, 96, 192, 256))
    assert count_parameters(small) < 60_000 < count_parameters(S7Net()) < count_parameters(big)
    assert small(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_tutorial_net_normalises_as_the_tutorial_does():
    state = TutorialNet().state_dict()
    assert state["normalize.mean"].flatten().tolist() == state["normalize.std"].flatten().tolist() == [0.5] * 3


@pytest.mark.parametrize("make", [S7Net, S7AirNet])
def test_models_normalise_inside_with_cifar_statistics_saved_as_buffers(make):
    model = make()
    state = model.state_dict()
    assert torch.allclose(state["normalize.mean"].flatten(), torch.tensor(CIFAR10_MEAN))
    assert torch.allclose(state["normalize.std"].flatten(), torch.tensor(CIFAR10_STD))
    x = torch.rand(1, 3, 32, 32)
    normalised = model.normalize(x)
    assert torch.allclose(normalised[0, 1], (x[0, 1] - CIFAR10_MEAN[1]) / CIFAR10_STD[1])
    assert torch.equal(model.normalize.on(x), normalised)  # the same, computed wherever x lives


def test_model_kwargs_rebuild_the_same_architecture():
    model = S7Net(widths=(16, 32, 64, 96), dilation=3)
    rebuilt = S7Net(**model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), rebuilt(x))
    assert rebuilt.c3[0][0].dilation == (3, 3)


def test_global_average_pooling_gives_adaptive_pooling_s_numbers_and_keeps_the_gradient_channels_last():
    x = torch.randn(8, 256, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    pooled = GlobalAvgPool2d()(x)
    assert torch.equal(pooled, nn.AdaptiveAvgPool2d(1)(x))
    grad, = torch.autograd.grad(pooled.sum(), x)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grad, torch.full_like(x, 1 / 9))
