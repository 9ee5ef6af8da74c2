"""The assignment's two networks: the PyTorch tutorial's starting point and the fixed S7 network.

Both take images as floats in [0, 1], shape (N, 3, 32, 32), and normalise inside, so a saved model needs no
separate preprocessing to train, evaluate, predict or export.
"""
import torch
from torch import nn

from .convs import ConvBNReLU, DepthwiseSeparableConv2d, conv3x3

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with the CIFAR-10 statistics kept as buffers (saved with the weights)."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class TutorialNet(nn.Module):
    """The CIFAR-10 network of the PyTorch "Training a classifier" tutorial (62,006 parameters)."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(self.normalize(x))))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class S7Net(nn.Module):
    """C1 C2 C3 C4 O: four convolution blocks with a max-pool between each pair, then GAP and a linear layer.

    C1 (32x32) is a single cheap 3x3 conv: full resolution is where every multiply costs the most.
    C2 (16x16) adds a depthwise-separable conv, C3 (8x8) opens with a dilated conv (dilation 2 sees 5x5 with
    3x3 weights) then another depthwise-separable one, C4 (4x4) holds the widest convs, where they are cheap.
    The receptive field ends at 74 pixels with the defaults (see helpers.receptive_field).
    """

    def __init__(self, widths=(32, 64, 128, 192), num_classes: int = 10, dilation: int = 2):
        super().__init__()
        self.model_kwargs = {"widths": list(widths), "num_classes": num_classes, "dilation": dilation}
        w1, w2, w3, w4 = widths
        self.normalize = Normalize()
        self.c1 = nn.Sequential(ConvBNReLU(conv3x3(3, w1), w1))
        self.pool1 = nn.MaxPool2d(2)
        self.c2 = nn.Sequential(ConvBNReLU(conv3x3(w1, w2), w2),
                                ConvBNReLU(DepthwiseSeparableConv2d(w2, w2), w2))
        self.pool2 = nn.MaxPool2d(2)
        self.c3 = nn.Sequential(ConvBNReLU(conv3x3(w2, w3, dilation=dilation), w3),
                                ConvBNReLU(DepthwiseSeparableConv2d(w3, w3), w3))
        self.pool3 = nn.MaxPool2d(2)
        self.c4 = nn.Sequential(ConvBNReLU(conv3x3(w3, w4), w4),
                                ConvBNReLU(conv3x3(w4, w4), w4))
        self.output = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w4, num_classes))

    def forward(self, x):
        x = self.pool1(self.c1(self.normalize(x)))
        x = self.pool2(self.c2(x))
        x = self.pool3(self.c3(x))
        return self.output(self.c4(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, the number the assignment limits (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
