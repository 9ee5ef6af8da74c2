"""The trace of a forward pass: every torch call seen with the tensors between them, ops named by their modules,
the image's height and width followed through reshapes, and the output stage found in each of its forms."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checker.trace import trace
from helpers.checker.trace_layout import regroup
from helpers.checker.trace_ops import canonical


class Lambda(nn.Module):
    """A network whose head is a function of the 4x4 map: each GAP form, or not-GAP form, a student writes."""

    def __init__(self, head):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = head

    def forward(self, x):
        return self.head(F.max_pool2d(self.conv(x), 8))  # 32 -> 4


GAP_FORMS = {
    "AdaptiveAvgPool2d(1)": nn.AdaptiveAvgPool2d(1),
    "AdaptiveAvgPool2d((1, 1))": nn.AdaptiveAvgPool2d((1, 1)),
    "AvgPool2d(4)": nn.AvgPool2d(4),
    "F.adaptive_avg_pool2d(x, 1)": lambda x: F.adaptive_avg_pool2d(x, 1),
    "F.avg_pool2d(x, x.shape[-1])": lambda x: F.avg_pool2d(x, x.shape[-1]),
    "F.avg_pool2d(x, kernel_size=x.size()[2:])": lambda x: F.avg_pool2d(x, kernel_size=x.size()[2:]),
    "x.mean(dim=(2, 3))": lambda x: x.mean(dim=(2, 3)),
    "x.mean([-1, -2])": lambda x: x.mean([-1, -2]),
    "torch.mean(x, (2, 3), keepdim=True)": lambda x: torch.mean(x, (2, 3), keepdim=True),
    "x.mean(3).mean(2)": lambda x: x.mean(3).mean(2),
    "x.view(n, c, -1).mean(-1)": lambda x: x.view(x.size(0), x.size(1), -1).mean(-1),
    "x.flatten(2).mean(2)": lambda x: x.flatten(2).mean(2),
    "x.sum((2, 3)) / 16": lambda x: x.sum((2, 3)) / (x.shape[-2] * x.shape[-1]),
    "x.sum((2, 3)) * (1 / 16)": lambda x: x.sum((2, 3)) * (1 / 16),
}


@pytest.mark.parametrize("form", GAP_FORMS)
def test_every_form_of_global_average_pooling_is_one(form):
    head = GAP_FORMS[form]
    graph = trace(Lambda(head if isinstance(head, nn.Module) else LambdaModule(head)))
    stage = graph.stage
    assert (stage.how, stage.covers, stage.map.grid) == ("mean", True, (4, 4))
    assert stage.map.producer.func == "max_pool2d"  # the map it averages, whatever the form


class LambdaModule(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


NOT_GAP = {  # form -> (how the map ends, does it read all of it)
    "AdaptiveMaxPool2d(1)": (nn.AdaptiveMaxPool2d(1), "max", True),
    "x.amax((2, 3))": (lambda x: x.amax((2, 3)), "max", True),
    "x.sum((2, 3))": (lambda x: x.sum((2, 3)), "sum", True),
    "AvgPool2d(3) on 4x4": (nn.AvgPool2d(3), "mean", False),
    "flatten": (nn.Flatten(), "flatten", True),
    "x.view(-1, 8 * 4 * 4)": (lambda x: x.view(-1, 8 * 4 * 4), "flatten", True),
    "a conv as large as the map": (nn.Conv2d(8, 10, 4), "conv", True),
}


@pytest.mark.parametrize("form", NOT_GAP)
def test_what_is_not_global_average_pooling_says_what_it_is(form):
    head, how, covers = NOT_GAP[form]
    stage = trace(Lambda(head if isinstance(head, nn.Module) else LambdaModule(head))).stage
    assert (stage.how, stage.covers, stage.map.grid) == (how, covers, (4, 4))


def test_a_network_returning_a_map_has_no_output_stage():
    graph = trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    assert graph.stage is None and graph.probed_map is graph.outputs[0] and graph.probed_map.grid == (30, 30)


def test_a_global_pool_whose_result_goes_back_into_the_map_is_no_output_stage():
    """Squeeze-and-excitation: x * sigmoid(fc(x.mean((2, 3)))). Its mean is no output stage; the later GAP is."""
    class SqueezeExcite(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 4)

        def forward(self, x):
            x = self.conv(x)
            x = x * torch.sigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]
            return F.adaptive_avg_pool2d(x, 1).flatten(1)

    graph = trace(SqueezeExcite())
    assert graph.stage.first.func == "adaptive_avg_pool2d" and graph.stage.map.producer.func == "mul"


class Named(nn.Module):
    """A residual block and functional calls, to name: leaf modules by name, a block's own ops as block.function,
    the network's own as function#n."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Residual()

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        return F.max_pool2d(self.block(x), 2)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out += x  # in place: a new version of the same tensor
        return F.relu(out, inplace=True)


def test_ops_are_named_by_their_module_or_their_function():
    graph = trace(Named())
    assert [(op.name, op.func) for op in graph.ops] == [
        ("stem", "conv2d"), ("relu", "relu"), ("max_pool2d", "max_pool2d"), ("block.conv", "conv2d"),
        ("block.add", "add"), ("block.relu", "relu"), ("max_pool2d#2", "max_pool2d")]


def test_in_place_ops_make_new_values_of_the_same_tensor():
    graph = trace(Named())
    conv, add, relu = graph.ops[3:6]
    assert add.outputs[0].tensor is conv.outputs[0].tensor and add.outputs[0] is not conv.outputs[0]
    assert add.inputs[0] is conv.outputs[0] and add.inputs[1] is graph.ops[2].outputs[0]  # the block's input
    assert relu.inputs[0] is add.outputs[0]


@pytest.mark.parametrize("reshape, dims", [
    (lambda x: x.view(x.size(0), x.size(1), -1), (None, None, "HW")),
    (lambda x: x.flatten(1), (None, None)),
    (lambda x: x.permute(0, 2, 3, 1), (None, "H", "W", None)),
    (lambda x: x.transpose(1, 3), (None, "W", "H", None)),
    (lambda x: x.unsqueeze(1), (None, None, None, "H", "W")),
    (lambda x: x[:, :, 1:-1, ::2], (None, None, "H", "W")),
])
def test_height_and_width_are_followed_through_reshapes(reshape, dims):
    graph = trace(LambdaModule(lambda x: reshape(nn.functional.conv2d(x, torch.ones(4, 3, 1, 1)))), (3, 6, 6))
    assert graph.ops[-1].outputs[0].dims == dims


def test_a_crop_is_a_step_with_an_offset():
    graph = trace(LambdaModule(lambda x: x[:, :, 2:, 1::2]), (3, 8, 8))
    assert graph.ops[0].steps["H"] == (1, 1, -2, False, "") and graph.ops[0].steps["W"] == (1, 2, -1, False, "")


def test_regroup_pairs_the_dims_a_reshape_merges():
    assert regroup((2, 8, 4, 4), (2, 8, 16)) == [([0], [0]), ([1], [1]), ([2, 3], [2])]
    assert regroup((2, 8, 1, 1), (2, 8)) == [([0], [0]), ([1, 2, 3], [1])]
    assert regroup((2, 128), (2, 128, 1, 1)) == [([0], [0]), ([1], [1, 2, 3])]


@pytest.mark.parametrize("function, name", [
    (torch.Tensor.__add__, "add"), (torch.Tensor.__iadd__, "add"), (torch.Tensor.add_, "add"),
    (torch.Tensor.__radd__, "add"), (torch.Tensor.__rsub__, "rsub"), (torch.Tensor.__truediv__, "div"),
    (torch.Tensor.__rtruediv__, "rdiv"), (F.max_pool2d, "max_pool2d"), (torch.relu_, "relu"),
    (torch.Tensor.__getitem__, "getitem"), (torch.max_pool2d, "max_pool2d"),
])
def test_spellings_of_one_function_share_a_name(function, name):
    assert canonical(function) == name


def test_the_trace_works_on_a_copy_in_eval_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    before = model[1].running_mean.clone()
    graph = trace(model)
    assert model.training and torch.equal(model[1].running_mean, before)
    assert [op.func for op in graph.ops] == ["conv2d", "batch_norm", "dropout"]
