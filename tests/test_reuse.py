"""helpers as a library for someone's own work: their own network trained, saved, loaded and predicted with, float
images taken as the models take them, and the package importable from anywhere."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers.checkpoints import CheckpointError, load_model, save_checkpoint
from helpers.data import CIFAR10
from helpers.evaluation import predict
from helpers.loop import train
from helpers.models import ARCHITECTURES, Network, register
from helpers.recipes import Recipe
from tests.conftest import made_up_images

ROOT = Path(__file__).resolve().parents[1]


class TinyUserNet(Network):
    """A network of a user's own: a Network subclass, its arguments passed up (registered by the fixture below,
    as a user's module would with @register)."""

    def __init__(self, width: int = 4):
        super().__init__(width=width)
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def made_up_data(n: int) -> CIFAR10:
    images, labels = made_up_images(n, seed=3)
    return CIFAR10(torch.as_tensor(images), torch.as_tensor(labels), torch.as_tensor(images[:32]),
                   torch.as_tensor(labels[:32]))


@pytest.fixture
def registered():
    """TinyUserNet in the registry for one test only: other tests list the registered networks."""
    register(TinyUserNet)
    yield
    del ARCHITECTURES["TinyUserNet"]


def test_a_users_own_network_trains_saves_loads_and_predicts(tmp_path, registered):
    assert ARCHITECTURES["TinyUserNet"] is TinyUserNet
    model = TinyUserNet(width=6)
    train(model, made_up_data(64), Recipe(epochs=1, batch_size=32, precision="fp32", tta="none"),
          device=torch.device("cpu"), progress=False)
    path = save_checkpoint(model, tmp_path / "mine.pt")
    loaded = load_model(path)
    assert type(loaded) is TinyUserNet and loaded.model_kwargs == {"width": 6}
    images = made_up_data(64).test_images
    expected = predict(model, images)  # the trained copy is channels-last: its kernels may round differently
    assert torch.allclose(predict(loaded, images), expected, atol=1e-5)


def test_float_images_in_0_1_are_taken_as_they_are_and_others_refused():
    model = TinyUserNet().eval()
    images = made_up_data(32).test_images
    as_floats = images.float() / 255
    assert torch.equal(predict(model, as_floats), predict(model, images))  # not divided by 255 a second time
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\], these go from 0 to 255"):
        predict(model, images.float())


def test_the_package_imports_from_anywhere_with_its_main_parts(tmp_path):
    """What `pip install -e .` gives (here: the repository on the path, run from another folder)."""
    code = ("import helpers, helpers.loop; "
            "print(helpers.loop.train.__module__, helpers.load_cifar10.__module__, helpers.S7AirNet.__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.stdout.split() == ["helpers.loop", "helpers.data", "S7AirNet"], result.stderr


class ConfigurableNet(TinyUserNet):
    """A user's network that takes a class as an argument: natural in Python, but no checkpoint can hold it."""

    def __init__(self, width: int = 4, activation=nn.ReLU):
        super().__init__(width)
        self.model_kwargs = {"width": width, "activation": activation}


def test_saving_a_network_whose_arguments_are_not_plain_values_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot save ConfigurableNet: its model_kwargs\['activation'\] "
                                              r"\(type\) is not a plain value .* weights_only=True"):
        save_checkpoint(ConfigurableNet(), tmp_path / "mine.pt")
    assert list(tmp_path.iterdir()) == []  # no file that could never be loaded
    with pytest.raises(CheckpointError, match=r"its history\[0\]\['loss'\] \(float64\) is not a plain value"):
        save_checkpoint(TinyUserNet(), tmp_path / "mine.pt", history=[{"loss": np.float64(0.5)}])
