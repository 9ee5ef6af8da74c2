"""The assignment's networks: the PyTorch tutorial's starting point, and two fixes that meet every S7 rule.

S7Net is the plain fix a student would write with the lecture's blocks (conv, BatchNorm, ReLU); S7AirNet spends
the same rules the way Keller Jordan's airbench does, and learns several times faster per epoch.

Every network is a `Network`: it takes images as floats in [0, 1], shape (N, 3, 32, 32), and normalises inside, so
a saved model needs no separate preprocessing to train, evaluate, predict or export; it knows the arguments that
rebuild it; and `register` puts it in ARCHITECTURES, the names checkpoints use. A network of your own becomes
trainable, saveable and loadable the same way: subclass Network and decorate it with @register.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .convs import ConvBNReLU, DepthwiseSeparableConv2d, conv3x3
from .data import to_float
from .errors import ConfigError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, the statistics kept as buffers (saved with the weights)."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.stats = (tuple(mean), tuple(std))  # plain numbers too: usable wherever the buffers happen to live
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std

    def on(self, x):
        """The same normalisation computed on x's device, whichever device the module is on."""
        mean, std = (torch.tensor(s, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for s in self.stats)
        return (x - mean) / std


ARCHITECTURES = {}  # class name -> class: how presets, checkpoints and the command line name a network


def register(cls):
    """Class decorator: the network can be built by name (build_model), so its checkpoints load again."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


class Network(nn.Module):
    """What the training loop, the checkpoints and the notebook expect of a network.

    model_kwargs: the keyword arguments that rebuild it (checkpoints store them beside the weights).
    init_from_data: whatever the network sets from training images before it trains; nothing by default.
    """

    def __init__(self, **model_kwargs):
        super().__init__()
        self.model_kwargs = model_kwargs

    def init_from_data(self, images: torch.Tensor) -> None:
        """Data-dependent initialisation from uint8 training images (N, 3, 32, 32), called once before training."""

    def describe(self) -> str:
        """The network in one line, for a run's first lines."""
        return f"{type(self).__name__}: {count_parameters(self):,} parameters"


@register
class TutorialNet(Network):
    """The CIFAR-10 network of the PyTorch "Training a classifier" tutorial, with the tutorial's own input
    normalisation (mean 0.5, std 0.5 per channel)."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
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


def check_arguments(widths, num_classes, dilation) -> None:
    """ValueError, naming the argument, unless they build a C1C2C3C4O network: four widths, a number of classes
    and a dilation, each a positive whole number (a dilation of 0 would build, and fail at the first image)."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not (isinstance(widths, (list, tuple)) and len(widths) == 4 and all(map(whole, widths))):
        raise ValueError(f"widths must be four positive whole numbers, not {widths!r}")
    for name, value in (("num_classes", num_classes), ("dilation", dilation)):
        if not whole(value):
            raise ValueError(f"{name} must be a positive whole number, not {value!r}")


class C1C2C3C4O(Network):
    """The assignment's architecture, said once in code: normalise, then C1, max-pool, C2, max-pool, C3, max-pool,
    C4, and the output stage O. A network of this kind chooses its four blocks and its output; the three max-pools
    and the order are fixed here."""

    def __init__(self, model_kwargs: dict, c1: nn.Module, c2: nn.Module, c3: nn.Module, c4: nn.Module,
                 output: nn.Module):
        super().__init__(**model_kwargs)
        self.normalize = Normalize()
        self.c1, self.pool1 = c1, nn.MaxPool2d(2)
        self.c2, self.pool2 = c2, nn.MaxPool2d(2)
        self.c3, self.pool3 = c3, nn.MaxPool2d(2)
        self.c4, self.output = c4, output

    def forward(self, x):
        x = self.pool1(self.c1(self.normalize(x)))
        x = self.pool2(self.c2(x))
        x = self.pool3(self.c3(x))
        return self.output(self.c4(x))


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """Global average pooling, AdaptiveAvgPool2d(1), computed as one average pool over the whole map: the same
    numbers, but its backward hands a channels-last gradient back channels-last. Adaptive pooling's is NCHW, and
    the channels-last GELU backward before it then runs on the CPU's slow mixed-layout path."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        return F.avg_pool2d(x, x.shape[-2:])


@register
class S7Net(C1C2C3C4O):
    """C1 C2 C3 C4 O: four convolution blocks with a max-pool between each pair, then GAP and a linear layer.

    C1 (32x32) is a single narrow 3x3 conv: at full resolution each weight is applied at the most positions.
    C2 (16x16) adds a depthwise-separable conv, C3 (8x8) opens with a dilated conv (dilation 2 sees 5x5 with
    3x3 weights) then another depthwise-separable one, C4 (4x4) holds the widest convs: most of the weights, and
    the most multiply-adds of any block (lecture.describe.block_table counts both).
    The receptive field ends at 74 pixels with the defaults (see helpers.checker.receptive_field).
    """

    def __init__(self, widths=(32, 64, 128, 192), num_classes: int = 10, dilation: int = 2):
        check_arguments(widths, num_classes, dilation)
        w1, w2, w3, w4 = widths
        super().__init__(
            {"widths": list(widths), "num_classes": num_classes, "dilation": dilation},
            c1=nn.Sequential(ConvBNReLU(conv3x3(3, w1), w1)),
            c2=nn.Sequential(ConvBNReLU(conv3x3(w1, w2), w2), ConvBNReLU(DepthwiseSeparableConv2d(w2, w2), w2)),
            c3=nn.Sequential(ConvBNReLU(conv3x3(w2, w3, dilation=dilation), w3),
                             ConvBNReLU(DepthwiseSeparableConv2d(w3, w3), w3)),
            c4=nn.Sequential(ConvBNReLU(conv3x3(w3, w4), w4), ConvBNReLU(conv3x3(w4, w4), w4)),
            output=nn.Sequential(GlobalAvgPool2d(), nn.Flatten(), nn.Linear(w4, num_classes)))


class PatchWhitening(nn.Conv2d):
    """A 2x2 convolution (no padding) whose 24 filters are the whitening basis of 2x2 image patches, and minus it.

    fit() sets the filters from training images: the eigenvectors of the 12x12 patch covariance, each divided by
    the square root of its eigenvalue, so every output channel starts decorrelated and of unit variance. They stay
    frozen (only the bias learns): the first layer then never has to learn what plain statistics already tell.
    The +/- pair lets the GELU after it keep both signs of every direction.
    """

    def __init__(self, eps: float = 5e-4):
        super().__init__(3, 24, 2, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """images: normalised floats (N, 3, H, W); every 2x2 patch of them counts."""
        patches = images.double().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        basis = (eigenvectors.T / (eigenvalues[:, None] + self.eps).sqrt()).reshape(12, 3, 2, 2).flip(0)
        self.weight.copy_(torch.cat([basis, -basis]).to(self.weight))
        self.bias.zero_()


class ShiftBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that learns only its shift: the scale stays 1, as the next conv's weights can scale instead."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12)
        self.weight.requires_grad_(False)


def identity_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Start the first in_channels filters as the identity (a Dirac kernel): the signal passes deep nets untouched."""
    n, (height, width) = min(conv.in_channels, conv.out_channels), conv.kernel_size
    with torch.no_grad():  # nn.init.dirac_'s values, set in one op (dirac_ loops over the channels in Python)
        conv.weight[:n].zero_()
        conv.weight[torch.arange(n), torch.arange(n), height // 2, width // 2] = 1
    return conv


class ScaledLinear(nn.Linear):
    """A bias-free linear layer whose output is multiplied by `scale`: small initial logits, and a slower head."""

    def __init__(self, in_features: int, out_features: int, scale: float):
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x):
        return super().forward(x) * self.scale


@register
class S7AirNet(C1C2C3C4O):
    """C1 C2 C3 C4 O after airbench (Keller Jordan's fastest CIFAR-10 trainer), cut to fit under 1M parameters.

    Each block ends with the conv that widens the channels; the max-pool follows it at once, and BatchNorm and GELU
    open the next block (pooling first makes the normalisation 4x cheaper). Sizes: 32 -> 31 (the 2x2 whitening)
    -> 15 -> 7 -> 3 pixels.
    C1: frozen patch whitening, then a 3x3 conv. C2: a **dilated** 3x3 conv (dilation 2) and the widening conv.
    C3: a 3x3 conv and a **depthwise-separable** one. C4: a depthwise-separable conv where 256 channels meet only 3x3
    pixels. O: global average pooling and one linear layer (output scaled by 1/9). All full convs start as identity
    maps, BatchNorms learn only their shift. The receptive field ends at 55 pixels.
    """

    def __init__(self, widths=(64, 256, 256, 256), num_classes: int = 10, dilation: int = 2):
        check_arguments(widths, num_classes, dilation)
        w1, w2, w3, w4 = widths
        super().__init__(
            {"widths": list(widths), "num_classes": num_classes, "dilation": dilation},
            c1=nn.Sequential(PatchWhitening(), nn.GELU(), identity_init(conv3x3(24, w1))),
            c2=nn.Sequential(*norm_act(w1), identity_init(conv3x3(w1, w1, dilation=dilation)),
                             *norm_act(w1), identity_init(conv3x3(w1, w2))),
            c3=nn.Sequential(*norm_act(w2), identity_init(conv3x3(w2, w2)), *norm_act(w2),
                             DepthwiseSeparableConv2d(w2, w3)),
            c4=nn.Sequential(*norm_act(w3), DepthwiseSeparableConv2d(w3, w4), *norm_act(w4)),
            output=nn.Sequential(GlobalAvgPool2d(), nn.Flatten(), ScaledLinear(w4, num_classes, 1 / 9)))

    def init_from_data(self, images: torch.Tensor) -> None:
        """Set C1's whitening filters from the first 5,000 uint8 training images (plenty for a 12x12 covariance).
        The statistics are computed on the CPU in float64, wherever the model already is."""
        self.c1[0].fit(self.normalize.on(to_float(images[:5000].cpu())))


def norm_act(channels: int):
    return ShiftBatchNorm2d(channels), nn.GELU()


MAX_PARAMETERS = 10**8  # 400 MB of fp32 weights: far beyond a CIFAR-10 network (WideResNet-28-10 has 36M)


def build_model(architecture: str, **model_kwargs) -> nn.Module:
    """A registered network by its class name: how presets, checkpoints and the command line say which they mean.

    ConfigError, in one line, for arguments it cannot be built from, and for more than MAX_PARAMETERS parameters,
    counted before any memory is allocated (an allocation of terabytes would end in a traceback or the OOM killer).
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}: choose from {', '.join(ARCHITECTURES)}")
    network = ARCHITECTURES[architecture]
    try:
        planned = planned_parameters(network, model_kwargs)
    except ConfigError:
        raise  # the network's own account of why (a --net network's file gone or changed)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{architecture} cannot be built from {model_kwargs}: {error}") from None
    if planned is not None and planned > MAX_PARAMETERS:
        raise ConfigError(f"{architecture} with {model_kwargs} would have {planned:,} parameters "
                          f"({planned * 4 / 1e9:,.0f} GB as fp32): more than {MAX_PARAMETERS:,} are not built here")
    return network(**model_kwargs)


def planned_parameters(network: type, model_kwargs: dict) -> int | None:
    """The parameters network(**model_kwargs) would have, counted on the meta device, where nothing is allocated;
    None for a network whose construction needs real tensors (the count is then left to the real build)."""
    try:
        with torch.device("meta"):
            return count_parameters(network(**model_kwargs))
    except RuntimeError:  # NotImplementedError too: an op that meta tensors do not support
        return None


def count_parameters(model: nn.Module) -> int:
    """Every parameter, trained or frozen (S7AirNet's whitening filters and BatchNorm scales count too):
    the number the assignment limits. Buffers such as BN statistics are not parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of one forward pass on one image, summed by forward hooks on every convolution and
    linear layer.

    A Conv2d spends one weight slice, (in_channels/groups) * kh * kw MACs, per output element, and a Linear one
    row, in_features, per output; a ConvTranspose2d spends one slice, (out_channels/groups) * kh * kw, per input
    element (the inserted zeros cost nothing).
    """
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        elements = inputs[0] if isinstance(module, nn.ConvTranspose2d) else output
        macs += elements.numel() * module.weight[0].numel()

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    handles = [conv.register_forward_hook(hook) for conv in convs]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return macs


def parameter_split(model: nn.Module) -> tuple[int, int]:
    """(trained, frozen) parameter counts: S7AirNet freezes its whitening filters and BatchNorm scales."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trained, count_parameters(model) - trained
