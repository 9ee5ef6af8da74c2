"""The S7 assignment's library. The core of a run sits at this level: data, models and their convolutions
(convs), recipes, the training loop (loop), optimizers and muon, evaluation, checkpoints; and the commands
`python -m helpers.train`, `helpers.predict` and `helpers.check`. Around it, three sub-packages a reader may skip:
runtime (device, precision, several processes, run folders), checker (any network against the S7 rules, its
receptive field) and lecture (the notebook's extras). helpers.notebook gathers what the notebook calls.
"""
import os

# OpenMP threads wait for each other at the end of every op, spinning for GNU OpenMP's default 300,000 turns
# before they sleep. Beside another busy process a spinning thread holds the core its partner needs: a fast step
# ran 7.6x slower than alone. A short spin (10,000 turns) halves that and costs nothing alone; fully passive waits
# cost 29% alone (benchmarks/RESULTS.md, "Threads under load"). The wait changes no arithmetic, so a run's numbers
# stay bit-identical. OpenMP reads it once, when torch loads, so it is set here, before any import of torch: every
# command (and the notebook) imports helpers first. A wait the user chose wins.
if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["GOMP_SPINCOUNT"] = "10000"

from .checker.spec import check_s7
from .checkpoints import load_checkpoint, load_model, save_checkpoint
from .data import CIFAR10, load_cifar10
from .evaluation import accuracy, evaluate, predict
from .models import S7AirNet, S7Net, TutorialNet, build_model, count_parameters, register
from .recipes import PRESETS, Recipe, resolve
from .runtime.device import pick_device
from .user_network import UserNetwork  # registered: its checkpoints rebuild wherever helpers is imported

__all__ = ["CIFAR10", "PRESETS", "Recipe", "S7AirNet", "S7Net", "TutorialNet", "accuracy", "build_model",
           "check_s7", "count_parameters", "evaluate", "load_checkpoint", "load_cifar10", "load_model", "pick_device",
           "predict", "register", "resolve", "save_checkpoint", "UserNetwork"]
