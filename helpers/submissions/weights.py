"""The accuracy of weights a student shipped, measured on the 10,000 CIFAR-10 test images instead of claimed.

A state_dict (bare, under "state_dict" / "model_state_dict" / "model", or saved from DataParallel with "module."
prefixes) loads with weights_only=True. A whole pickled model can only be unpickled, which runs code: that happens
only in the child process that already runs the submission's code."""
import pickle
import sys
import warnings
from pathlib import Path
from unittest.mock import patch

import torch
from torch import nn

from ..checkpoints import which_tensors
from ..data import load_cifar10
from ..errors import first_line
from ..evaluation import evaluate
from ..user_network import UserNetwork

WRAPPING_KEYS = ("state_dict", "model_state_dict", "model")


class WeightsError(Exception):
    """The weights file cannot be read or does not fit the network; one line."""


def with_weights(model: nn.Module, path: Path) -> nn.Module:
    """`model` with the weights in `path`, or the model pickled there."""
    if not path.is_file():
        raise WeightsError(f"--weights {path} is not a file")
    saved = _read(path, model)
    if isinstance(saved, nn.Module):
        return saved
    for key in WRAPPING_KEYS:
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    if not isinstance(saved, dict):
        raise WeightsError(f"--weights {path} holds a {type(saved).__name__}, not a state_dict or a model")
    state = {key.removeprefix("module."): value for key, value in saved.items()}
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        raise WeightsError(f"--weights {path} does not fit the network: {which_tensors(error)}") from None
    return model


def _read(path: Path, model: nn.Module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # a whole model: its classes are the submission's, found under __main__
            classes = {name: value for name, value in vars(sys.modules[type(model).__module__]).items()
                       if isinstance(value, type) and issubclass(value, nn.Module)}
            try:
                with patch.multiple(sys.modules["__main__"], create=True, **classes, _unpickled_by=path):
                    return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as error:
                raise WeightsError(f"--weights {path} cannot be read: {type(error).__name__}: "
                                   f"{first_line(error)}") from None
        except (OSError, RuntimeError, EOFError, ValueError) as error:
            raise WeightsError(f"--weights {path} cannot be read: {type(error).__name__}") from None


def measured_accuracy(model: nn.Module, stats, data_root) -> float:
    """Plain top-1 accuracy in percent on the 10,000 test images, `stats` normalising in front of the model."""
    data = load_cifar10(data_root, download=False)
    mean, std = stats or (None, None)
    return evaluate(UserNetwork(mean=mean, std=std, network=model), data.test_images, data.test_labels)
