"""What a training run is: a Recipe (every setting but the network and the seed), the presets that pair a network
with one, and `resolve`, which turns a preset, quick mode and overrides into the run every caller trains.

The command line, the benchmark and the notebook all call `resolve`, so `--quick --epochs 2` means the same
everywhere: quick mode first shrinks the run, then the overrides win. What each preset reached, and the screens
that chose its settings, are in benchmarks/RESULTS.md.
"""
import math
import os
from dataclasses import dataclass, field, fields, replace

from .errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TTA_MODES = ("none", "flip", "flip-translate")
SCHEDULES = ("triangular", "constant")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the network and the seed."""

    epochs: float = 4            # passes over the training images; a fraction ends the last one early (airbench's 9.9)
    batch_size: int = 512        # big batches keep a CPU's matrix units busy; lr is matched to it
    lr: float = 0.4              # peak of the triangular schedule
    momentum: float = 0.9
    nesterov: bool = True        # looks ahead along the momentum: steadier at a high lr
    weight_decay: float = 5e-4
    schedule: str = "triangular"  # linear warm-up then linear decay to zero (one-cycle); or "constant"
    warmup: float = 0.25         # fraction of the steps spent rising from 0 to lr
    label_smoothing: float = 0.2  # softer targets: better calibrated, and more accurate on short schedules
    translate: int = 2           # augmentation: random shifts up to this many pixels (reflect padding)
    flip: bool = True            # augmentation: random horizontal flips
    alternate_flip: bool = False  # flip image i in epoch e when i + e is odd instead: each seen both ways in turn
    bias_lr_scale: float = 1.0   # BatchNorm shifts learn this many times faster (their decay per step unchanged)
    muon_lr: float | None = None  # conv filters that mix channels take Muon steps (helpers.muon), this peak lr
    precision: str = "auto"      # bf16 | fp16 | fp32 autocast, or "auto": chosen per device (helpers.runtime.precision)
    channels_last: bool = True   # NHWC memory layout, the one oneDNN and cuDNN convolutions prefer
    sync_batchnorm: bool = False  # under torchrun on GPUs: BatchNorm statistics of the global batch (see distribute)
    compile: bool = False        # torch.compile the network: fused kernels, fewer launches; a compile first
    tta: str = "flip"            # test-time augmentation (helpers.evaluation): none, flip, or flip-translate

    def __post_init__(self):
        """Every field checked, whether typed (--set), coded or read back from a file someone may have edited."""
        for name, (what, choices) in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {what} {getattr(self, name)!r}: choose from {', '.join(choices)}")
        for name, (fits, what) in RANGES.items():
            if not fits(getattr(self, name)):
                raise ValueError(f"{name} must be {what}, not {getattr(self, name)!r}")
        if self.nesterov and self.momentum == 0:  # torch's SGD refuses it, one training step too late
            raise ValueError("nesterov needs a momentum above 0: set nesterov=false or a momentum")


def _number(value) -> bool:
    """A finite int or float, never a bool (True would read as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The fields with a list of values, in words and choices.
CHOICES = {"precision": ("precision", PRECISIONS), "tta": ("test-time augmentation", TTA_MODES),
           "schedule": ("schedule", SCHEDULES)}
# Every other field: the test its value must pass, and the values it takes in words.
ABOVE_0 = (lambda v: _number(v) and v > 0, "a finite number above 0")
FROM_0 = (lambda v: _number(v) and v >= 0, "a finite number from 0 up")
BELOW_1 = (lambda v: _number(v) and 0 <= v < 1, "a number from 0 up to, but not including, 1")
SWITCH = (lambda v: isinstance(v, bool), "true or false")
RANGES = {
    "epochs": ABOVE_0, "batch_size": (lambda v: _whole(v) and v > 0, "a whole number above 0"), "lr": ABOVE_0,
    "momentum": BELOW_1, "nesterov": SWITCH, "weight_decay": FROM_0,
    "warmup": (lambda v: _number(v) and 0 <= v <= 1, "a fraction from 0 to 1"), "label_smoothing": BELOW_1,
    "translate": (lambda v: _whole(v) and 0 <= v < 32, "a whole number of pixels from 0 to 31"),  # reflect padding
    "flip": SWITCH, "alternate_flip": SWITCH, "bias_lr_scale": ABOVE_0,
    "muon_lr": (lambda v: v is None or ABOVE_0[0](v), "None (SGD for every weight) or a finite number above 0"),
    "channels_last": SWITCH, "sync_batchnorm": SWITCH, "compile": SWITCH,
}


@dataclass(frozen=True)
class Preset:
    """A network (a name in helpers.models.ARCHITECTURES and the arguments that build it) and its recipe."""

    architecture: str
    recipe: Recipe
    model_kwargs: dict = field(default_factory=dict)


# airbench's hyperparameters (Keller Jordan), translated to a mean loss: lr 10 and weight decay 0.015 "per 1024
# examples" at momentum 0.85 become an lr of about 1.27 per 1000 images (scaled with the batch) and a weight decay of
# 1.5e-3 here. BatchNorm shifts learn 64x faster, alternating flips show each image both ways, and the test-time
# augmentation adds one-pixel shifts. Short schedules want more steps: smaller batches than a CPU would like.
# Muon (airbench94_muon) trains the filter banks: a short schedule then reaches what a longer one did with SGD
# (benchmarks/RESULTS.md, "Muon for the filter banks").
AIRBENCH = Recipe(momentum=0.85, weight_decay=1.5e-3, warmup=0.2, alternate_flip=True, bias_lr_scale=64.0,
                  tta="flip-translate")
PRESETS = {
    # fast: a narrower S7AirNet for 1.2 epochs, the least that keeps every seed's plain accuracy clear of 80%. C1 at
    # 24 channels (the whitening's own width) pays for a wider C2.
    "fast": Preset("S7AirNet", replace(AIRBENCH, epochs=1.2, batch_size=128, lr=0.16, muon_lr=0.12),
                   {"widths": [24, 128, 256, 256]}),
    # full: the whole S7AirNet, the accuracy recipe.
    "full": Preset("S7AirNet", replace(AIRBENCH, epochs=12, batch_size=250, lr=0.3175, muon_lr=0.06)),
    # fast-gpu: for a GPU, where a step waits on its kernel launches, not on its arithmetic: the whole S7AirNet (its
    # Muon banks take fewer launches than fast's) at batch 512, a quarter of fast's launches an epoch
    # (benchmarks/launches.py); its accuracy is measured on the CPU.
    "fast-gpu": Preset("S7AirNet", replace(AIRBENCH, epochs=1.2, batch_size=512, lr=0.64, muon_lr=0.12)),
    # s7net: the plain fix of the tutorial network, no airbench tricks (Nesterov SGD at batch 512), 5 epochs: with 4
    # its plain accuracy came within a point of 80%.
    "s7net": Preset("S7Net", replace(Recipe(), epochs=5)),
    # tutorial: the PyTorch tutorial's network and setting, as given, the baseline: batch 4, plain SGD at lr 0.001
    # with momentum 0.9, a constant lr, 2 epochs, no augmentation, no weight decay or smoothing, fp32 (its 0.5/0.5
    # normalisation is inside TutorialNet). It breaks the S7 rules: the notebook shows which.
    "tutorial": Preset("TutorialNet", Recipe(epochs=2, batch_size=4, lr=0.001, nesterov=False, weight_decay=0.0,
                                             schedule="constant", label_smoothing=0.0, translate=0, flip=False,
                                             precision="fp32", channels_last=False, tta="none")),
}
DEFAULT_PRESET = "fast"
# The recipe for a network the engine has never seen (--net, train_network): screened on the networks of
# tests/own_nets.py, written as students write them (benchmarks/RESULTS.md, "Any network").
NET_RECIPE = Recipe(epochs=2, batch_size=256, lr=0.2, warmup=0.2, alternate_flip=True, muon_lr=0.06)

QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES = 2048, 1000


def quick_mode_requested() -> bool:
    """True when $S7_QUICK=1: the tests set it so that nbval runs the notebook in moments."""
    return os.environ.get("S7_QUICK") == "1"


def resolve(preset=DEFAULT_PRESET, quick: bool = False, **overrides) -> Preset:
    """The preset (a name or a Preset) as it will run: quick mode (one epoch, batch at most 256) first, then the
    overrides (Recipe fields; None means "keep") on top, so an explicit --epochs always wins."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    recipe = replace(preset.recipe, epochs=1, batch_size=min(256, preset.recipe.batch_size)) if quick else \
        preset.recipe
    return replace(preset, recipe=replace(recipe, **{k: v for k, v in overrides.items() if v is not None}))


def epochs_text(n: float) -> str:
    """'1 epoch', '1.5 epochs', '12 epochs': how the help text and the notebook's time table say a run's length."""
    return f"{n:g} epoch{'s' * (n != 1)}"


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """The batches in an epoch: train_batches yields every full one and drops the last partial one."""
    return n_images // batch_size


def training_steps(n_images: int, recipe: Recipe) -> int:
    """The steps a run of `recipe` takes on n_images (the schedule spans exactly these): every full batch of each
    epoch, and of a fractional last epoch its share, rounded, and at least one step, so that each of the
    epoch_count epochs trains. ConfigError for a batch larger than the data."""
    per_epoch = steps_per_epoch(n_images, recipe.batch_size)
    if per_epoch == 0:
        raise ConfigError(f"batch size {recipe.batch_size} is larger than the {n_images} training images: lower it "
                          f"or use more data")
    return max(round(recipe.epochs * per_epoch), (epoch_count(recipe) - 1) * per_epoch + 1)


def epoch_count(recipe: Recipe) -> int:
    """How many epochs a run goes through, a fractional last one included."""
    return math.ceil(recipe.epochs)


def quick_data(data):
    """The slice of CIFAR-10 a quick run trains and tests on (the files are already shuffled)."""
    return data.subset(QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES)


def recipe_from_dict(saved: dict) -> Recipe:
    """The Recipe a checkpoint or history.json stored; ValueError names the fields this version does not know."""
    unknown = sorted(set(saved) - {f.name for f in fields(Recipe)})
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(unknown)}")
    return Recipe(**saved)
