"""What a training run is: a Recipe (every setting but the seed), the presets that pair a network with one, and
the one function, `resolve`, that turns a preset, quick mode and overrides into the run every caller trains.

The command line, the benchmark and the notebook all call `resolve`, so `--quick --epochs 2` means the same
everywhere: quick mode first shrinks the run, then the overrides win.
"""
import os
from dataclasses import dataclass, field, fields, replace

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TTA_MODES = ("none", "flip", "flip-translate")
SCHEDULES = ("triangular", "constant")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the network and the seed; each default earns its place."""

    epochs: int = 4
    batch_size: int = 512        # big batches keep the CPU's matrix units busy; lr is matched to it
    lr: float = 0.4              # peak of the triangular schedule; 0.2 gave -0.4%
    momentum: float = 0.9
    nesterov: bool = True        # looks ahead along the momentum: steadier at a high lr
    weight_decay: float = 5e-4
    schedule: str = "triangular"  # linear warm-up then linear decay to zero (one-cycle); or "constant"
    warmup: float = 0.25         # fraction of the steps spent rising from 0 to lr
    label_smoothing: float = 0.2  # softer targets: better calibrated and more accurate on short schedules
    translate: int = 2           # augmentation: random shifts up to this many pixels (reflect padding)
    flip: bool = True            # augmentation: random horizontal flips
    alternate_flip: bool = False  # flip image i in epoch e when i + e is odd instead: each seen both ways in turn
    bias_lr_scale: float = 1.0   # BatchNorm shifts learn this many times faster (weight decay unchanged)
    muon_lr: float | None = None  # conv filters that mix channels take Muon steps (helpers.muon), this peak lr
    whitening_bias_epochs: int | None = None  # S7AirNet: its whitening bias learns these first epochs, then freezes
    skip_easiest: float = 0.0    # from epoch 2 on, leave out this fraction of images, the easiest (helpers.difficulty)
    precision: str = "auto"      # bf16 | fp16 | fp32 autocast, or "auto": chosen per device (helpers.precision)
    channels_last: bool = True   # NHWC memory layout, the one oneDNN and cuDNN convolutions prefer
    sync_batchnorm: bool = False  # under torchrun on GPUs: BatchNorm statistics of the global batch (see distribute)
    tta: str = "flip"            # test-time augmentation (helpers.evaluation): none, flip, or flip-translate

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {self.tta!r}: choose from {', '.join(TTA_MODES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        if not 0 <= self.skip_easiest < 1:
            raise ValueError(f"skip_easiest is the fraction of images left out, from 0 up to (not including) 1, "
                             f"not {self.skip_easiest}")
        if self.muon_lr is not None and self.muon_lr <= 0:
            raise ValueError(f"muon_lr must be None (SGD for every weight) or above 0, not {self.muon_lr}")
        if self.whitening_bias_epochs is not None and self.whitening_bias_epochs < 0:
            raise ValueError(f"whitening_bias_epochs must be None (always learn) or at least 0, not "
                             f"{self.whitening_bias_epochs}")


@dataclass(frozen=True)
class Preset:
    """A network (a name in helpers.models.ARCHITECTURES and the arguments that build it) and its recipe."""

    architecture: str
    recipe: Recipe
    model_kwargs: dict = field(default_factory=dict)


# airbench's hyperparameters (Keller Jordan), translated to a mean loss: lr 10 and weight decay 0.015 "per 1024
# examples" at momentum 0.85 are lr 1.27 per 1000 images (scaled with the batch) and weight decay 1.5e-3 here.
# BatchNorm shifts learn 64x faster, alternating flips show each image both ways, and the test-time augmentation
# adds one-pixel shifts. Short schedules want more steps: batch 250 for 12 epochs, batch 128 for fast.
# Muon (airbench94_muon) trains the filter banks: with it fast needs one epoch where SGD needed two (81.46% against
# 81.09%, 5 seeds each on one machine, README), and its peak lr was screened at 0.06 / 0.12 / 0.24 (4-epoch runs
# of full, then 12- and 1-epoch runs: README). The whitening bias freezing after epoch 1 and epoch 2 leaving out
# its easiest images made SGD's 2-epoch fast preset cheaper; with one epoch neither has anything left to do.
AIRBENCH = Recipe(momentum=0.85, weight_decay=1.5e-3, warmup=0.2, alternate_flip=True, bias_lr_scale=64.0,
                  tta="flip-translate")
PRESETS = {
    # fast: a narrower S7AirNet for 1 epoch; full: the whole S7AirNet for 12. fast's widths were measured (5 seeds
    # each, README): C1 at 24 (the whitening's own width) pays for a 128-wide C2, which learns faster.
    "fast": Preset("S7AirNet", replace(AIRBENCH, epochs=1, batch_size=128, lr=0.16, muon_lr=0.12),
                   {"widths": [24, 128, 256, 256]}),
    "full": Preset("S7AirNet", replace(AIRBENCH, epochs=12, batch_size=250, lr=0.3175, muon_lr=0.06)),
    # s7net: the plain fix of the tutorial network, no airbench tricks (4 epochs at batch 512, Nesterov SGD).
    "s7net": Preset("S7Net", Recipe()),
}
DEFAULT_PRESET = "fast"

# The PyTorch tutorial's own setting, as given: batch 4, plain SGD at lr 0.001 with momentum 0.9, a constant lr,
# 2 epochs, no augmentation, no weight decay or smoothing, fp32 (its 0.5/0.5 normalisation is inside TutorialNet).
TUTORIAL = Preset("TutorialNet", Recipe(epochs=2, batch_size=4, lr=0.001, nesterov=False, weight_decay=0.0,
                                        schedule="constant", label_smoothing=0.0, translate=0, flip=False,
                                        precision="fp32", channels_last=False, tta="none"))

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


def epochs_text(n: int) -> str:
    """'1 epoch', '12 epochs': how the help text and the notebook's time table say a run's length."""
    return f"{n} epoch{'s' * (n != 1)}"


def quick_data(data):
    """The slice of CIFAR-10 a quick run trains and tests on (the files are already shuffled)."""
    return data.subset(QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES)


# Recipes saved before these fields existed: "architecture" now lives beside the recipe, "bf16" became precision,
# and tta was True (flip) or False.
LEGACY_FIELDS = {"architecture": lambda value: {}, "bf16": lambda value: {"precision": "bf16" if value else "fp32"}}
LEGACY_TTA = {True: "flip", False: "none"}


def recipe_from_dict(saved: dict) -> Recipe:
    """The Recipe a checkpoint or history.json stored (older field names included); ValueError names what is off."""
    names = {f.name for f in fields(Recipe)}
    unknown = sorted(set(saved) - names - set(LEGACY_FIELDS))
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(unknown)}")
    values = {k: v for k, v in saved.items() if k in names}
    for key in set(saved) & set(LEGACY_FIELDS):
        values = {**LEGACY_FIELDS[key](saved[key]), **values}
    if isinstance(values.get("tta"), bool):
        values["tta"] = LEGACY_TTA[values["tta"]]
    return Recipe(**values)

