"""Networks written the ways students write this assignment, each small and each for one thing the checker must
judge right (test_student_nets.py says what). Written for these tests; narrow, so that they run in a moment.

Styles: nn.Sequential blocks, forward made of F.* calls, x.mean, residual adds, Inception concatenations, 1x1 conv
heads after GAP with view and log_softmax, nn.ModuleList loops, padding="same", ceil_mode pools, a factory,
unpadded convs with a strided head, a block defined and never called, "separable" convs without their 1x1,
padding_mode="reflect", a third max-pool that leaves one pixel.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class OneByOneHead(nn.Module):
    """Sequential blocks; GAP as a fixed AvgPool2d(4), then a 1x1 conv to 10 channels, view, log_softmax."""

    def __init__(self):
        super().__init__()
        self.convblock1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(8),
                                        nn.Dropout(0.05), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2, 2)
        self.convblock2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                                        nn.Conv2d(8, 16, 1, bias=False), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2, 2)
        self.convblock3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2, bias=False), nn.ReLU())
        self.pool3 = nn.MaxPool2d(2, 2)
        self.convblock4 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.ReLU())
        self.gap = nn.Sequential(nn.AvgPool2d(kernel_size=4))
        self.convblock5 = nn.Sequential(nn.Conv2d(16, 10, 1, bias=False))

    def forward(self, x):
        x = self.pool1(self.convblock1(x))
        x = self.pool2(self.convblock2(x))
        x = self.pool3(self.convblock3(x))
        x = self.convblock5(self.gap(self.convblock4(x)))
        return F.log_softmax(x.view(-1, 10), dim=-1)


class HeadConvsOnly(nn.Module):
    """Nothing between the third max-pool and GAP: its two 1x1 convs run on the 1x1 map, a head, not C4."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
                                nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 10, 1))

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        return F.log_softmax(self.head(self.gap(x)).view(-1, 10), dim=1)


class Functional(nn.Module):
    """Layers built in __init__, the forward made of F.relu and F.max_pool2d calls; GAP as x.mean(dim=(2, 3)).
    The "pointwise" conv can be made grouped (groups=4), which mixes no channels across groups."""

    def __init__(self, pointwise_groups: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1, groups=pointwise_groups)
        self.c3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.c4 = nn.Conv2d(16, 16, 3, padding=1)
        self.c5 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), kernel_size=2, stride=2)
        x = F.relu(self.c5(F.relu(self.c4(x))))
        return self.fc(x.mean(dim=(2, 3)))


def GroupedPointwise():
    return Functional(pointwise_groups=4)


class Pointless(nn.Module):
    """A 1x1 depthwise conv (filters nothing spatially) and a 1x1 conv with dilation 2 (dilates nothing)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 1, dilation=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 10, 1), nn.Flatten())

    def forward(self, x):
        return self.net(x)


class BranchesAdd(nn.Module):
    """C4 holds a plain 3x3 branch and a dilated one, added: the field is the dilated branch's, 46, not 62."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3 = nn.Conv2d(16, 16, 1)
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.a(x)) + F.relu(self.b(x))
        return self.fc(x.mean((2, 3)))


class Mixed(nn.Module):
    """Inception-style: a 1x1, a 3x3 and a dilated 3x3 branch, concatenated."""

    def __init__(self, cin, c):
        super().__init__()
        self.b1, self.b3 = nn.Conv2d(cin, c, 1), nn.Conv2d(cin, c, 3, padding=1)
        self.bd = nn.Conv2d(cin, c, 3, padding=2, dilation=2)

    def forward(self, x):
        return F.relu(torch.cat([self.b1(x), self.b3(x), self.bd(x)], dim=1))


class Inception(nn.Module):
    """Mixed blocks in every stage; GAP as F.avg_pool2d(x, x.shape[-1]); x.squeeze() then log_softmax(dim=1)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Mixed(4, 4))
        self.c2 = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.BatchNorm2d(12), nn.ReLU(),
                                nn.Conv2d(12, 8, 1), Mixed(8, 4))
        self.c3 = Mixed(12, 4)
        self.c4 = nn.Sequential(Mixed(12, 4), nn.Conv2d(12, 10, 1))

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        x = self.c4(x)
        return F.log_softmax(F.avg_pool2d(x, x.shape[-1]).squeeze(), dim=1)


class BasicBlock(nn.Module):
    def __init__(self, c, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        out += x
        return F.relu(out)


class ResNet(nn.Module):
    """Residual blocks with identity shortcuts, max-pool transitions, a dilated block, a separable transition."""

    def __init__(self):
        super().__init__()
        self.prep = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8)
        self.trans1 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 1, bias=False))
        self.layer2 = BasicBlock(8, dilation=2)
        self.trans2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1))
        self.layer3 = BasicBlock(16)
        self.pool = nn.MaxPool2d(2)
        self.layer4 = BasicBlock(16)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = self.layer2(self.trans1(self.layer1(self.prep(x))))
        out = self.layer4(self.pool(self.layer3(self.trans2(out))))
        out = F.adaptive_avg_pool2d(out, 1)
        return F.log_softmax(self.linear(out.view(out.size(0), -1)), dim=1)


class StrideInsteadOfPool(nn.Module):
    """Two max-pools and a stride-2 conv in place of the third."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.features(x)


class ModuleListLoop(nn.Module):
    """Blocks built in a loop into an nn.ModuleList, padding="same", 3x3 stride-2 max-pools with ceil_mode,
    Dropout2d, a 5x5 depthwise conv; 32 -> 17 -> 9 -> 5."""

    def __init__(self, widths=(8, 8, 16, 16)):
        super().__init__()
        self.blocks, cin = nn.ModuleList(), 3
        for i, w in enumerate(widths):
            layers = [nn.Conv2d(cin, w, 3, padding="same"), nn.BatchNorm2d(w), nn.ReLU(), nn.Dropout2d(0.1)]
            if i == 1:
                layers += [nn.Conv2d(w, w, 5, padding="same", groups=w), nn.ReLU(), nn.Conv2d(w, w, 1)]
            if i == 2:
                layers += [nn.Conv2d(w, w, 3, padding="same", dilation=3), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            cin = w
        self.pools = nn.ModuleList(nn.MaxPool2d(3, 2, padding=1, ceil_mode=True) for _ in range(3))
        self.head = nn.Linear(cin, 10)

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.pools):
                x = self.pools[i](x)
        return self.head(F.adaptive_avg_pool2d(x, (1, 1)).flatten(1))


def conv_bn(cin, cout, **options):
    return nn.Sequential(nn.Conv2d(cin, cout, bias=False, **options), nn.BatchNorm2d(cout), nn.ReLU())


class DepthMultiplier(nn.Module):
    """A depthwise conv with depth multiplier 2 (groups=8, 8 -> 16 channels), then BatchNorm, ReLU and the 1x1."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(conv_bn(3, 8, kernel_size=3, padding=1), conv_bn(8, 8, kernel_size=3, padding=1))
        self.c2 = nn.Sequential(conv_bn(8, 16, kernel_size=3, padding=1, groups=8), conv_bn(16, 16, kernel_size=1))
        self.c3 = conv_bn(16, 16, kernel_size=3, padding=2, dilation=2)
        self.c4 = nn.Sequential(conv_bn(16, 16, kernel_size=3, padding=1), conv_bn(16, 16, kernel_size=3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.out = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 10))

    def forward(self, x):
        x = self.pool(self.c3(self.pool(self.c2(self.pool(self.c1(x))))))
        return self.out(self.c4(x))


class WholeMapConv(nn.Module):
    """The last conv is as large as the 4x4 map (a fully connected layer); the GAP after it averages a 1x1 map."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 10, 4))
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        return F.log_softmax(self.gap(self.c4(x)).view(-1, 10), dim=1)


class ViewMean(nn.Module):
    """One nn.Sequential, GAP as x.view(b, c, -1).mean(-1)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn(3, 8, kernel_size=3, padding=1), conv_bn(8, 8, kernel_size=3, padding=1), nn.MaxPool2d(2),
            conv_bn(8, 8, kernel_size=3, padding=1, groups=8), nn.Dropout(0.05), conv_bn(8, 16, kernel_size=1),
            nn.MaxPool2d(2), conv_bn(16, 16, kernel_size=3, padding=2, dilation=2), nn.MaxPool2d(2),
            conv_bn(16, 16, kernel_size=3, padding=1), conv_bn(16, 16, kernel_size=3, padding=1))
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layers(x)
        b, c = x.shape[:2]
        return F.log_softmax(self.classifier(x.view(b, c, -1).mean(-1)), -1)


class SumPool(nn.Module):
    """The map summed over height and width, then divided by their product (an average) or not (a sum)."""

    def __init__(self, average: bool = True):
        super().__init__()
        self.average = average
        self.body = Functional()

    def forward(self, x):
        b = self.body
        x = F.max_pool2d(F.relu(b.c1(x)), 2)
        x = F.max_pool2d(F.relu(b.pw(b.dw(x))), 2)
        x = F.max_pool2d(F.relu(b.c3(x)), 2)
        x = F.relu(b.c5(F.relu(b.c4(x))))
        h, w = x.shape[-2:]
        x = x.sum(dim=[-1, -2])
        return b.fc(x / (h * w) if self.average else x)


def SumOnly():
    return SumPool(average=False)


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class WithSqueezeExcite(nn.Module):
    """A squeeze-and-excitation block in C2: from there every unit sees the whole input."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU(),
                                SqueezeExcite(16))
        self.c3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x), 2)
        x = F.max_pool2d(self.c2(x), 2)
        x = F.max_pool2d(self.c3(x), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.c4(x), 1), 1))


class HardCodedView(nn.Module):
    """The PyTorch tutorial's network: x.view(-1, 16 * 5 * 5), a head that runs at 32x32 only."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(x.view(-1, 16 * 5 * 5))))


class LayerNormBlock(nn.Module):
    """A ConvNeXt block: 7x7 depthwise, then channels-last LayerNorm and Linear layers (1x1 convs), a shortcut."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.ln = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        return x + self.pw2(F.gelu(self.pw1(self.ln(y)))).permute(0, 3, 1, 2)


class ConvNeXtStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.b1 = nn.Conv2d(3, 8, 3, padding=1), LayerNormBlock(8)
        self.mid, self.b2 = nn.Conv2d(8, 16, 3, padding=2, dilation=2), LayerNormBlock(16)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(self.b1(self.stem(x)), 2)
        x = F.max_pool2d(self.b2(self.mid(x)), 2)
        x = F.max_pool2d(self.c3(x), 2)
        return self.fc(self.c4(x).mean([-1, -2]))


class Upsampled(nn.Module):
    """Reflect padding, a stride-2 dilated conv and a nearest upsampling back: the formulas can only estimate the
    field after the upsampling, so the checker measures it (42: it fails the rule)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3 = nn.Conv2d(16, 16, 3, stride=2, padding=2, dilation=2)
        self.c4 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.interpolate(F.relu(self.c3(x)), scale_factor=2, mode="nearest"), 2)
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.c4(x)), 1).flatten(1))


def build():
    """A factory: one nn.Sequential with BatchNorm1d and Dropout between two Linear layers after GAP."""
    def block(cin, cout, dilation=1):
        return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]
    return nn.Sequential(
        *block(3, 8), *block(8, 8), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Conv2d(8, 16, 1, bias=False), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), *block(16, 16, dilation=2), *block(16, 16), nn.MaxPool2d(2), *block(16, 16), *block(16, 16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(16, 10), nn.LogSoftmax(dim=1))


class AdaptiveTwo(nn.Module):
    """AdaptiveAvgPool2d(2) then Flatten: no global pool. Its windows are 2x2 of the 4x4 map at 32x32 (half a larger
    map: the probe keeps them 2x2)."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                               nn.Conv2d(8, 16, 1), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                               nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                               nn.Linear(64, 10))

    def forward(self, x):
        return self.f(x)


class RawParameters(nn.Module):
    """Weights as raw nn.Parameters, every layer a functional call (F.conv2d with groups=, F.linear)."""

    def __init__(self):
        super().__init__()
        def weights(*shape):
            return nn.Parameter(torch.randn(*shape) * 0.1)
        self.w1, self.wd, self.wp = weights(8, 3, 3, 3), weights(8, 1, 3, 3), weights(16, 8, 1, 1)
        self.w3, self.w4, self.wf, self.bf = weights(16, 16, 3, 3), weights(16, 16, 3, 3), weights(10, 16), weights(10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(F.conv2d(x, self.w1, padding=1)), 2)
        x = F.conv2d(x, self.wd, padding=1, groups=8)
        x = F.max_pool2d(F.relu(F.conv2d(x, self.wp)), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, self.w3, padding=2, dilation=2)), 2)
        x = F.relu(F.conv2d(x, self.w4, padding=1))
        return F.linear(x.mean((-2, -1)), self.wf, self.bf)


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: a 7x7 conv on the channel mean and max, a sigmoid gate multiplying the map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))


class WithAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.att = nn.Conv2d(3, 8, 3, padding=1), SpatialAttention()
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(self.att(F.relu(self.pw(self.dw(x)))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(torch.mean(F.relu(self.c4(x)), dim=[2, 3]))


class StridedHead(nn.Module):
    """Unpadded convs; a 2x2 average pool (not global) and then a 1x1 conv with stride 2, which reads only the top
    left of the 2x2 map: the logits see 26 px of the image, not the whole map."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.BatchNorm2d(16))
        self.pool = nn.MaxPool2d(2, 2)
        self.c2 = nn.Sequential(nn.Conv2d(16, 16, 3, dilation=2), nn.ReLU(), nn.BatchNorm2d(16))
        self.c3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.ReLU())
        self.avg = nn.AvgPool2d(2)
        self.out = nn.Conv2d(32, 10, 1, stride=2)

    def forward(self, x):
        x = self.pool(self.c2(self.pool(self.c1(x))))  # 30 -> 15 -> 11 -> 5
        return F.log_softmax(self.out(self.avg(self.c3(x))).view(-1, 10), dim=-1)


class SpareBlock(nn.Module):
    """A network that meets every rule, and a block built in __init__ that forward never calls."""

    def __init__(self):
        super().__init__()
        self.c1 = conv_bn(3, 8, kernel_size=3, padding=1)
        self.c2 = nn.Sequential(conv_bn(8, 8, kernel_size=3, padding=1, groups=8), conv_bn(8, 16, kernel_size=1))
        self.c3 = conv_bn(16, 16, kernel_size=3, padding=2, dilation=2)
        self.c4 = conv_bn(16, 16, kernel_size=3, padding=1)
        self.spare = conv_bn(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(self.c3(F.max_pool2d(self.c2(F.max_pool2d(self.c1(x), 2)), 2)), 2)
        return self.fc(F.adaptive_avg_pool2d(self.c4(x), 1).flatten(1))


class GroupedNotSeparable(nn.Module):
    """Two depthwise convs called separable, neither followed by a 1x1 conv: one by a max-pool and then a 3x3
    conv, the other by the global pool, whose 1x1 conv after it is the classifier."""

    def __init__(self):
        super().__init__()
        self.c1 = conv_bn(3, 16, kernel_size=3, padding=1)
        self.c2 = nn.Sequential(conv_bn(16, 16, kernel_size=3, padding=1, groups=16))
        self.c3 = nn.Sequential(conv_bn(16, 16, kernel_size=3, padding=1),
                                conv_bn(16, 16, kernel_size=3, padding=2, dilation=2))
        self.c4 = nn.Sequential(conv_bn(16, 32, kernel_size=3, padding=1, groups=16), nn.AvgPool2d(4),
                                nn.Conv2d(32, 10, 1))

    def forward(self, x):
        x = F.max_pool2d(self.c3(F.max_pool2d(self.c2(F.max_pool2d(self.c1(x), 2)), 2)), 2)
        return F.log_softmax(self.c4(x).view(-1, 10), dim=-1)


class ReflectPadded(nn.Module):
    """Convs with padding_mode="reflect", the 1x1 too: nn.Conv2d then pads with F.pad before it convolves."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect"), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect"), nn.ReLU(),
                                nn.BatchNorm2d(16), nn.Dropout(0.1), nn.Conv2d(16, 32, 1, padding_mode="reflect"))
        self.c3 = nn.Conv2d(32, 32, 3, padding=2, dilation=2, padding_mode="reflect")
        self.c4 = nn.Conv2d(32, 32, 3, padding=1, padding_mode="reflect")
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.c3(self.pool(self.c2(self.pool(self.c1(x)))))))
        return self.fc(F.relu(self.c4(x)).mean(dim=(2, 3)))


class PoolToOne(nn.Module):
    """Unpadded convs shrink the map to 3x3 before the third max-pool, which leaves 1x1 (its 2x2 window reads part
    of the 3x3): the "C4" convs after it run on one pixel, and the AdaptiveAvgPool2d averages that one pixel."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(conv_bn(3, 16, kernel_size=3), conv_bn(16, 16, kernel_size=3))  # 32 -> 28
        self.c2 = nn.Sequential(conv_bn(16, 16, kernel_size=3, groups=16), conv_bn(16, 32, kernel_size=1),
                                conv_bn(32, 32, kernel_size=3))  # 14 -> 10
        self.c3 = nn.Sequential(conv_bn(32, 32, kernel_size=3, padding=2, dilation=2))  # 5 -> 5
        self.c3b = conv_bn(32, 32, kernel_size=3)  # 5 -> 3
        self.c4 = nn.Sequential(conv_bn(32, 32, kernel_size=3, padding=1), nn.AdaptiveAvgPool2d(1),
                                nn.Conv2d(32, 10, 1))
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(self.c3b(self.c3(self.pool(self.c2(self.pool(self.c1(x)))))))
        return F.log_softmax(self.c4(x).flatten(1), dim=1)


# --- hand-written activations and norms between a depthwise conv and its 1x1 conv --------------------------------

class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def swish(x):
    return x * torch.sigmoid(x)


class HSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3) / 6


def hswish(x):
    return x * F.relu6(x + 3) / 6


class Mish(nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


def mish(x):
    return x * torch.tanh(F.softplus(x))


class ChannelLayerNorm(nn.Module):
    """A LayerNorm over the channels of an (N, C, H, W) map, written out with means as ConvNeXt's code writes it."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels)), eps

    def forward(self, x):
        centred = x - x.mean(1, keepdim=True)
        normed = centred / torch.sqrt(centred.pow(2).mean(1, keepdim=True) + self.eps)
        return self.weight[:, None, None] * normed + self.bias[:, None, None]


def channel_norm(x):
    return (x - x.mean(1, keepdim=True)) / (x.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()


class BetweenHalves(nn.Module):
    """dw, BatchNorm, `between` (a module, or a function of the map), pw: a depthwise-separable conv whatever
    element-wise activation or channel norm sits between its halves. Field 46."""

    def __init__(self, between):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw, self.bn, self.between, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), \
            between, nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.between(self.bn(self.dw(x))))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(F.relu(self.c4(x)).mean((2, 3)))


BETWEEN = {"Swish": Swish, "swish": lambda: swish, "HSwish": HSwish, "hswish": lambda: hswish, "Mish": Mish,
           "mish": lambda: mish, "ChannelLayerNorm": lambda: ChannelLayerNorm(8), "channel_norm": lambda: channel_norm}


class GatedByItsInput(nn.Module):
    """dw's output gated by a sigmoid of dw's *input*, then pw: the gate brings a second path, so the 1x1 conv
    reads more than the depthwise conv's output (no depthwise-separable conv)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x) * torch.sigmoid(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(F.relu(self.c4(x)).mean((2, 3)))


def centred(x):
    """The mean of the channels taken away, the first half of a channel LayerNorm."""
    return x - x.mean(1, keepdim=True)



class NormBeforeGap(nn.Module):
    """A channel norm (a module, or a function of the map) as the last op on the map the global pool averages: on
    the only path (field 46), or ending a residual branch of two 3x3 convs added to that map (field 46 + 2 * 2 * 8
    = 78: the branch's, not the skip's)."""

    def __init__(self, norm, residual=False):
        super().__init__()
        self.c1, self.norm, self.residual = nn.Conv2d(3, 8, 3, padding=1), norm, residual
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.c4(x))
        x = x + self.norm(self.branch(x)) if self.residual else self.norm(x)
        return self.fc(x.mean((2, 3)))


class PartialAverageHead(nn.Module):
    """No GAP: an AvgPool2d(3) on the 4x4 map averages its top-left 3x3 to 1x1, then a 1x1 conv gives the classes.
    One unit of the map has 46 px; each logit sees the pool's window of them, 46 + 2 * 8 = 62 px."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.gap = nn.Sequential(nn.AvgPool2d(3), nn.Conv2d(16, 10, 1))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return F.log_softmax(self.gap(F.relu(self.c4(x))).flatten(1), dim=1)


class ChoosesOnTheData(nn.Module):
    """forward picks a 3x3 or a 5x5 conv by the brightness of its input: a trace sees one of the two, and the
    other's weights look unused."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.small, self.large = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2)
        self.dw, self.pw = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)
        self.c3, self.c4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.max_pool2d(self.small(x) if x.mean() > 0.5 else self.large(x), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(F.relu(self.c4(x)).mean((2, 3)))
