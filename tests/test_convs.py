"""Each block of helpers.convs equals the textbook formulation it stands for (tiny tensors, CPU)."""
import torch
import torch.nn.functional as F

from helpers.convs import (
    DepthwiseSeparableConv2d,
    PixelShuffleUpsample,
    ResizeConvUpsample,
    SpatiallySeparableConv2d,
    TransposedConvUpsample,
    conv3x3,
    dilated_conv,
    grouped_conv,
)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_weight_counts_of_the_lecture():
    assert count(conv3x3(16, 32)) == 16 * 32 * 9 == 4608
    assert count(DepthwiseSeparableConv2d(16, 32)) == 16 * 9 + 16 * 32 == 656
    assert count(SpatiallySeparableConv2d(16, 32)) == 16 * 32 * 3 + 32 * 3 == 1632
    assert count(grouped_conv(16, 32, groups=4)) == 4608 // 4
    assert count(dilated_conv(16, 32, dilation=2)) == 4608


def test_grouped_conv_is_split_convolve_concatenate():
    """The ResNeXt reformulation: g convolutions on g slices of the channels, outputs concatenated."""
    torch.manual_seed(0)
    conv, x = grouped_conv(8, 12, groups=4), torch.randn(2, 8, 6, 6)
    parts = [F.conv2d(xg, wg, padding=1) for xg, wg in zip(x.chunk(4, dim=1), conv.weight.chunk(4, dim=0))]
    torch.testing.assert_close(conv(x), torch.cat(parts, dim=1))


def test_spatially_separable_is_a_full_conv_with_rank_one_kernels():
    """Every (out, in) kernel of the full equivalent is outer(vertical[out, in], horizontal[out])."""
    torch.manual_seed(0)
    block, x = SpatiallySeparableConv2d(3, 4), torch.randn(2, 3, 7, 7)
    vertical, horizontal = block.vertical.weight[:, :, :, 0], block.horizontal.weight[:, 0, 0, :]
    full = vertical[:, :, :, None] * horizontal[:, None, None, :]
    assert full.shape == (4, 3, 3, 3) and all(torch.linalg.matrix_rank(k) == 1 for k in full.flatten(0, 1))
    torch.testing.assert_close(block(x), F.conv2d(x, full, padding=1))


def test_depthwise_separable_is_depthwise_then_pointwise():
    """Equal to its two parts by F.conv2d, and to a full conv with kernels pointwise[o, i] * depthwise[i]."""
    torch.manual_seed(0)
    block, x = DepthwiseSeparableConv2d(3, 5), torch.randn(2, 3, 6, 6)
    depthwise, pointwise = block.depthwise.weight, block.pointwise.weight
    torch.testing.assert_close(block(x), F.conv2d(F.conv2d(x, depthwise, padding=1, groups=3), pointwise))
    full = pointwise * depthwise[:, 0][None]  # (5, 3, 1, 1) * (1, 3, 3, 3)
    torch.testing.assert_close(block(x), F.conv2d(x, full, padding=1))


def test_dilated_conv_sees_every_second_pixel_of_a_5x5_window():
    torch.manual_seed(0)
    conv, x = dilated_conv(1, 1, dilation=2), torch.randn(1, 1, 9, 9, requires_grad=True)
    output = conv(x)
    output[0, 0, 4, 4].backward()
    seen = torch.zeros(9, 9, dtype=torch.bool)
    seen[2:7:2, 2:7:2] = True
    assert output.shape == x.shape and torch.equal(x.grad[0, 0] != 0, seen)


def test_upsamplers_double_height_and_width():
    x = torch.randn(2, 3, 5, 7)
    for upsampler in (TransposedConvUpsample(3, 4), PixelShuffleUpsample(3, 4), ResizeConvUpsample(3, 4)):
        assert upsampler(x).shape == (2, 4, 10, 14)


def test_icnr_pixel_shuffle_starts_as_nearest_upsampling():
    """Output == nearest x2 upsampling of the pre-shuffle conv's channels for sub-pixel 0 (channels 0, 4, 8)."""
    torch.manual_seed(0)
    block, x = PixelShuffleUpsample(3, 3), torch.randn(2, 3, 5, 5)
    first_sub_pixel = block.conv(x)[:, ::4]
    torch.testing.assert_close(block(x), F.interpolate(first_sub_pixel, scale_factor=2, mode="nearest"))
