"""Convolution building blocks: one small module per idea, each saying when to use it."""
from torch import nn


def conv3x3(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size (padding = dilation); no bias, a BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)


class DepthwiseSeparableConv2d(nn.Module):
    """A k x k depthwise convolution (one filter per channel) then a 1x1 pointwise one that mixes channels.

    Use it where a normal convolution's in*out*k*k weights are too many: 16 -> 32 channels at 3x3 costs
    16*9 + 16*32 = 656 weights instead of 4,608, for the same output shape and receptive field.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel_size // 2)
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ConvBNReLU(nn.Sequential):
    """Any convolution followed by BatchNorm and ReLU: the unit every S7 block is made of."""

    def __init__(self, conv: nn.Module, out_channels: int):
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
