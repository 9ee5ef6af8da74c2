"""Shared fixtures: small made-up CIFAR-10 folders in both layouts, and the real data when present."""
import io
import pickle
import socket
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from helpers.data import BINARY_FOLDER, PYTHON_FOLDER, TEST_FILES, TRAIN_FILES, default_data_root, find_layout
from helpers.loop import seed_everything, train
from helpers.models import S7AirNet

TINY_AIR = (8, 16, 16, 16)  # S7AirNet widths small enough for a few CPU steps in a test


def made_up_images(n: int, seed: int):
    """n random uint8 images (N, 3, 32, 32) and labels 0-9, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def write_binary_layout(root: Path, per_file: int) -> dict:
    """Write cifar-10-batches-bin/ with `per_file` records per file; return the arrays written, per file."""
    folder = root / BINARY_FOLDER
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(TRAIN_FILES[BINARY_FOLDER] + TEST_FILES[BINARY_FOLDER]):
        images, labels = made_up_images(per_file, seed=i)
        records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(per_file, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (images, labels)
    return written


def write_python_layout(root: Path, per_file: int) -> dict:
    """Write cifar-10-batches-py/ as torchvision's pickles; return the arrays written, per file."""
    folder = root / PYTHON_FOLDER
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(TRAIN_FILES[PYTHON_FOLDER] + TEST_FILES[PYTHON_FOLDER]):
        images, labels = made_up_images(per_file, seed=10 + i)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images.reshape(per_file, -1), b"labels": labels.tolist()}, f)
        written[name] = (images, labels)
    return written


def train_tiny_airnet(data, recipe, checkpoint_path: Path, **options):
    """A tiny S7AirNet trained from seed 0 on the CPU, saving last.pt at checkpoint_path: one of the runs that a
    resume test compares (whole, stopped early, resumed). Returns the model and its history."""
    seed_everything(0)
    model = S7AirNet(TINY_AIR)
    history = train(model, data, recipe, torch.Generator().manual_seed(0), torch.device("cpu"), progress=False,
                    evaluate_each_epoch=False, checkpoint_path=checkpoint_path, **options)
    return model, history


def png_kb(fig) -> float:
    """The size of a figure's PNG as the notebook saves it (bbox tight, at the default inline dpi), in KB."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=matplotlib.rcParams["figure.dpi"])
    return buffer.tell() / 1024


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def real_data_root():
    """The real CIFAR-10 where the code itself looks (helpers.data.default_data_root: $CIFAR10_ROOT, else ./data);
    the tests that need it skip, saying where they looked, when it is not there."""
    root = default_data_root().resolve()
    if find_layout(root) is None:
        pytest.skip(f"real CIFAR-10 not found in {root.resolve()}: put it in ./data or set $CIFAR10_ROOT")
    return root


@pytest.fixture(scope="session")
def real_data(real_data_root):
    from helpers.data import load_cifar10
    return load_cifar10(real_data_root, download=False)


def exits_with(main, argv, capsys, status=2) -> str:
    """Run a command's main(argv), expect SystemExit(status) and exactly one line on stderr, no traceback; return it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err
