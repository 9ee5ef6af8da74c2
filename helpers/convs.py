"""Convolution building blocks: one small module per idea, each saying when to use it."""
import torch
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


def grouped_conv(in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 4) -> nn.Conv2d:
    """A convolution whose channels are split into `groups` independent convolutions (ResNeXt, ShuffleNet).

    Use it to cut a layer's weights and multiply-accumulates by `groups` when the channels need not all see
    each other; follow it with a 1x1 convolution (or a channel shuffle) so the groups can talk.
    groups=in_channels is the depthwise convolution.
    """
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)


def dilated_conv(in_channels: int, out_channels: int, dilation: int = 2) -> nn.Conv2d:
    """A 3x3 convolution with holes: 9 weights spread over a (2*dilation + 1)^2 window; the size is kept.

    Use it to widen the receptive field without pooling away resolution (segmentation, WaveNet, DeepLab):
    dilations 1, 2, 4, 8 stacked grow it exponentially (3, 7, 15, 31). Repeating one dilation > 1 leaves
    pixels no output depends on (gridding), so mix dilations.
    """
    return conv3x3(in_channels, out_channels, dilation=dilation)


class SpatiallySeparableConv2d(nn.Module):
    """A k x 1 convolution then a per-channel 1 x k one: every (out, in) kernel is a rank-1 outer product.

    Use it where the filters you want are (nearly) separable, like Sobel or Gaussian ones, to pay about 1/k of
    a k x k: 16 -> 32 channels at 3x3 costs 16*32*3 + 32*3 = 1,632 weights, not 4,608.
    The kernel applied for output o and input i is outer(vertical[o, i], horizontal[o]).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.vertical = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(kernel_size // 2, 0),
                                  bias=False)
        self.horizontal = nn.Conv2d(out_channels, out_channels, (1, kernel_size), padding=(0, kernel_size // 2),
                                    groups=out_channels, bias=False)

    def forward(self, x):
        return self.horizontal(self.vertical(x))


class TransposedConvUpsample(nn.ConvTranspose2d):
    """A stride-`scale` transposed convolution (odd kernel_size) that multiplies the height and width by `scale`.

    The learnable upsampler of early GANs and U-Nets. When the kernel size is not divisible by the stride, output
    pixels receive unequal numbers of contributions, which shows as a checkerboard (Odena et al. 2016); prefer
    PixelShuffleUpsample or ResizeConvUpsample for images.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3):
        super().__init__(in_channels, out_channels, kernel_size, stride=scale, padding=kernel_size // 2,
                         output_padding=scale - 1, bias=False)


class PixelShuffleUpsample(nn.Module):
    """Sub-pixel convolution (Shi et al. 2016): a conv to out*scale^2 channels, then nn.PixelShuffle(scale).

    Use it for learned upsampling computed at the low resolution (super-resolution, decoders): the MACs of a
    resize-convolution, scale^2 times its weights, and each output pixel sees a full k x k input window.
    ICNR initialisation (Aitken et al. 2017) gives the scale^2 sub-pixel channels of each output the same
    weights, so the block starts as nearest-neighbour upsampling of one convolution: no checkerboard at start.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * scale ** 2, kernel_size, padding=kernel_size // 2,
                              bias=False)
        self.shuffle = nn.PixelShuffle(scale)
        with torch.no_grad():  # ICNR; PixelShuffle reads channel c * scale^2 + s as sub-pixel s of output c
            self.conv.weight.copy_(self.conv.weight[:out_channels].repeat_interleave(scale ** 2, dim=0))

    def forward(self, x):
        return self.shuffle(self.conv(x))


class ResizeConvUpsample(nn.Module):
    """Nearest-neighbour upsampling then a convolution (Odena et al. 2016's resize-convolution).

    Use it as the simple checkerboard-free learned upsampler: every output pixel gets the same number of
    contributions. It convolves at the high resolution: scale^2 times the MACs of that conv at the input's size.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=scale, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        return self.conv(self.upsample(x))
