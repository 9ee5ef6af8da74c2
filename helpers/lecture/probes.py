"""Looking inside a network without changing it: a copy to take gradients from, and what its layers output.

The effective receptive field and Grad-CAM both need a layer's output in the graph of the input; both work on a
float32 CPU copy in eval mode, so the caller's model keeps its weights, its mode, its device and its frozen flags.
"""
import copy
from contextlib import contextmanager

import torch
from torch import nn

from ..data import model_input


def probe_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU eval-mode copy whose parameters need no gradient: only the input's or a layer's is taken."""
    return copy.deepcopy(model).to("cpu", torch.float32).eval().requires_grad_(False)


def layer_name(model: nn.Module, layer) -> str:
    """The qualified name of `layer` in `model` (a name is returned as it is): it finds the layer in a copy."""
    if isinstance(layer, str):
        return layer
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise ValueError(f"{type(layer).__name__} is not a module of this {type(model).__name__}")


def as_input(images) -> torch.Tensor:
    """The models' input as a float32 CPU tensor in [0, 1], from uint8 [0, 255] or float [0, 1] images."""
    return model_input(torch.as_tensor(images).detach().cpu())


@contextmanager
def recorded_outputs(net: nn.Module, names):
    """Within the block, every forward of `net` fills the yielded dict with {name: that submodule's output};
    "" names the whole network."""
    outputs, handles = {}, []
    for name in names:
        def record(module, inputs, output, name=name):
            outputs[name] = output
        handles.append(net.get_submodule(name).register_forward_hook(record))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def output_size(model: nn.Module, name: str, image_shape) -> tuple:
    """(height, width) of the output of `model`'s submodule `name` on one zero image of image_shape (C, H, W)."""
    net = probe_copy(model)
    with recorded_outputs(net, [name]) as outputs, torch.no_grad():
        net(torch.zeros(1, *image_shape))
    return tuple(outputs[name].shape[-2:])
