"""Everything the S7 notebook calls: data, models, training, receptive field, requirement checks, plots.

The core of a run is importable from here, the training loop from helpers.training (helpers.train is the
command line, `python -m helpers.train`); the lecture's extras (helpers.convs, zoo, receptive_field, erf, gradcam,
plots) from their modules.
"""
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
