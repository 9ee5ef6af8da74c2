"""Everything the S7 notebook calls: data, models, training, receptive field, requirement checks, plots.

The core of a run is importable from here, the training loop from helpers.training (helpers.train is the
command line, `python -m helpers.train`); the lecture's extras (helpers.convs, zoo, receptive_field, erf, gradcam,
plots) from their modules.
"""
import os

# OpenMP threads wait for each other at the end of every op. By default they spin meanwhile: beside another busy
# process a spinning thread holds the core its partner needs, and two-thread steps ran several times slower than a
# fair share (benchmarks/threads.py). Passive waiting sleeps instead; it changes no arithmetic, so a run's numbers
# stay bit-identical. OpenMP reads it once, when torch loads, so it is set here, before any import of torch: every
# command (and the notebook) imports helpers first. A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoints import load_checkpoint, load_model, save_checkpoint
from .data import CIFAR10, load_cifar10
from .device import pick_device
from .evaluation import accuracy, evaluate, predict
from .models import S7AirNet, S7Net, TutorialNet, build_model, count_parameters, register
from .recipes import PRESETS, Recipe, resolve
from .spec import check_s7

__all__ = ["CIFAR10", "PRESETS", "Recipe", "S7AirNet", "S7Net", "TutorialNet", "accuracy", "build_model",
           "check_s7", "count_parameters", "evaluate", "load_checkpoint", "load_cifar10", "load_model", "pick_device",
           "predict", "register", "resolve", "save_checkpoint"]
