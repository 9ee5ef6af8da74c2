"""Full-size networks in the styles students hand in for this assignment, written for these tests and for the
bring-your-own-network measurements (benchmarks/RESULTS.md): each is a plain nn.Module written for inputs
normalised with CIFAR-10's mean and std (transforms.Normalize), as a student's is, and meets the S7 rules.

Styles: ReLU before BatchNorm with dropout after every conv and a 1x1-conv head ending in log_softmax; no norm layer
at all with functional pools and x.mean as GAP; parallel branches concatenated (a dilated one beside a plain one);
nn.ModuleList loops with a separable-conv class of its own and a Linear after GAP.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_relu_bn(cin, cout, dropout, **conv):
    return [nn.Conv2d(cin, cout, 3, bias=False, **conv), nn.ReLU(), nn.BatchNorm2d(cout), nn.Dropout(dropout)]


class DropoutNet(nn.Module):
    """Conv, ReLU, BatchNorm, Dropout(0.05) everywhere; a depthwise-separable conv in C3, a dilated one in C2; GAP as
    AvgPool2d(4) on the 4x4 map, then a 1x1 conv to 10 channels and log_softmax."""

    def __init__(self, dropout=0.05):
        super().__init__()
        self.convblock1 = nn.Sequential(*conv_relu_bn(3, 32, dropout, padding=1),
                                        *conv_relu_bn(32, 64, dropout, padding=1))
        self.pool1 = nn.MaxPool2d(2, 2)
        self.convblock2 = nn.Sequential(*conv_relu_bn(64, 64, dropout, padding=2, dilation=2),
                                        *conv_relu_bn(64, 96, dropout, padding=1))
        self.pool2 = nn.MaxPool2d(2, 2)
        self.convblock3 = nn.Sequential(nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False),
                                        nn.Conv2d(96, 128, 1, bias=False), nn.ReLU(), nn.BatchNorm2d(128),
                                        nn.Dropout(dropout), *conv_relu_bn(128, 128, dropout, padding=1))
        self.pool3 = nn.MaxPool2d(2, 2)
        self.convblock4 = nn.Sequential(*conv_relu_bn(128, 128, dropout, padding=1),
                                        *conv_relu_bn(128, 128, dropout, padding=1))
        self.gap = nn.AvgPool2d(kernel_size=4)
        self.convblock5 = nn.Conv2d(128, 10, 1, bias=False)

    def forward(self, x):
        for block, pool in zip((self.convblock1, self.convblock2, self.convblock3), (self.pool1, self.pool2,
                                                                                    self.pool3)):
            x = pool(block(x))
        x = self.convblock5(self.gap(self.convblock4(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class NoNormNet(nn.Module):
    """No norm layer: convs with biases and ReLUs, F.max_pool2d, GAP as x.mean(dim=(2, 3)), a Linear to the logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=2, dilation=2)
        self.conv4 = nn.Conv2d(64, 128, 3, padding=1)
        self.depthwise = nn.Conv2d(128, 128, 3, padding=1, groups=128)
        self.pointwise = nn.Conv2d(128, 192, 1)
        self.conv5 = nn.Conv2d(192, 192, 3, padding=1)
        self.conv6 = nn.Conv2d(192, 192, 3, padding=1)
        self.fc = nn.Linear(192, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.pointwise(self.depthwise(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.conv6(F.relu(self.conv5(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Branches(nn.Module):
    """Two branches read the same map, a plain 3x3 and a dilated 3x3, and are concatenated."""

    def __init__(self, cin, each):
        super().__init__()
        self.plain = nn.Sequential(nn.Conv2d(cin, each, 3, padding=1, bias=False), nn.BatchNorm2d(each), nn.ReLU())
        self.dilated = nn.Sequential(nn.Conv2d(cin, each, 3, padding=2, dilation=2, bias=False),
                                     nn.BatchNorm2d(each), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.plain(x), self.dilated(x)], dim=1)


def block(cin, cout, dropout=0.1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Dropout(dropout))


class BranchNet(nn.Module):
    """Inception-like: C2 and C3 open with parallel branches; depthwise-separable C4; AdaptiveAvgPool2d, Linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(block(3, 32), block(32, 64))
        self.c2 = nn.Sequential(Branches(64, 48), block(96, 128))
        self.c3 = nn.Sequential(Branches(128, 64), block(128, 192))
        self.c4 = nn.Sequential(nn.Conv2d(192, 192, 3, padding=1, groups=192, bias=False),
                                nn.Conv2d(192, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        return self.fc(torch.flatten(self.gap(self.c4(x)), 1))


class SeparableConv(nn.Module):
    def __init__(self, cin, cout, dilation=1):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class LoopNet(nn.Module):
    """Blocks kept in nn.ModuleLists and run in loops; a dilated depthwise-separable conv in C3; 1x1 conv head after
    GAP, log_softmax."""

    def __init__(self, widths=(48, 96, 160, 256), dropout=0.1):
        super().__init__()
        cin, self.blocks = 3, nn.ModuleList()
        for i, width in enumerate(widths):
            layers = nn.ModuleList()
            for j in range(2):
                conv = SeparableConv(cin, width, dilation=2) if (i, j) == (2, 0) else \
                    SeparableConv(cin, width) if i == 3 else nn.Conv2d(cin, width, 3, padding=1, bias=False)
                layers.append(nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(), nn.Dropout(dropout)))
                cin = width
            self.blocks.append(layers)
        self.head = nn.Conv2d(cin, 10, 1)

    def forward(self, x):
        for i, layers in enumerate(self.blocks):
            for layer in layers:
                x = layer(x)
            if i < 3:
                x = F.max_pool2d(x, 2)
        x = self.head(F.adaptive_avg_pool2d(x, 1))
        return F.log_softmax(x.flatten(1), dim=1)
