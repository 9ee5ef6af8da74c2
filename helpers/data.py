"""CIFAR-10 from a data root folder into memory, and augmented batches made on the training device.

The whole data set is 180 MB of uint8, so it lives in memory (on the GPU when training there) and every
batch is cut, flipped and translated as one tensor: no per-image PIL work, no DataLoader workers.
"""
import hashlib
import io
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .download import ARCHIVE_FOLDER, DownloadError, download_cifar10
from .recipes import steps_per_epoch

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32  # binary layout: one label byte, then the R, G and B planes
IMAGES_PER_FILE = 10_000

# The official binary files (cifar-10-binary.tar.gz) and their published MD5s.
BINARY_FOLDER = "cifar-10-batches-bin"
BINARY_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
# torchvision's python layout, what `torchvision.datasets.CIFAR10(download=True)` leaves behind: cifar-10-batches-py
PYTHON_FOLDER = ARCHIVE_FOLDER
TRAIN_FILES = {BINARY_FOLDER: [f"data_batch_{i}.bin" for i in range(1, 6)],
               PYTHON_FOLDER: [f"data_batch_{i}" for i in range(1, 6)]}
TEST_FILES = {BINARY_FOLDER: ["test_batch.bin"], PYTHON_FOLDER: ["test_batch"]}
PYTHON_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

class DatasetError(RuntimeError):
    """CIFAR-10 is missing, truncated or corrupted; the message says where we looked and what we expected.

    The message is always one line (whitespace collapsed), as the command line prints it after `error:`.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class CIFAR10:
    """The data set as tensors: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple = CLASSES

    def to(self, device) -> "CIFAR10":
        """A copy with every tensor on `device`, so batches are cut where the model runs."""
        return replace(self, **{k: getattr(self, k).to(device) for k in
                                ("train_images", "train_labels", "test_images", "test_labels")})

    def subset(self, n_train: int, n_test: int) -> "CIFAR10":
        """The first n images of each split (CIFAR-10 files are already shuffled): CI's quick mode."""
        return replace(self, train_images=self.train_images[:n_train], train_labels=self.train_labels[:n_train],
                       test_images=self.test_images[:n_test], test_labels=self.test_labels[:n_test])


def default_data_root() -> Path:
    """$CIFAR10_ROOT when set (CI points it at the shared copy), else ./data as in the PyTorch tutorial."""
    return Path(os.environ.get("CIFAR10_ROOT", "data"))


def load_cifar10(root=None, download: bool = True, strict: bool = True) -> CIFAR10:
    """Read CIFAR-10 from `root`, in the binary or the python layout, downloading it only when neither is there.

    `strict` checks every file against the official size and MD5; tests turn it off for small made-up files.
    Strict or not, python batches are unpickled with nothing but numpy arrays allowed, so they cannot run code.
    """
    root = Path(root) if root is not None else default_data_root()
    try:
        root.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop: RuntimeError before Python 3.13, OSError after
        raise DatasetError(f"the data root {root} cannot be followed ({error}): point it at a real folder") from None
    folder = find_layout(root)
    if folder is None:
        if not download:
            raise DatasetError(_not_found_message(root))
        try:
            download_cifar10(root)
        except DownloadError as error:
            raise DatasetError(f"{_not_found_message(root)} The download failed too: {error}") from error
        folder = root / PYTHON_FOLDER
    parse = _parse_binary if folder.name == BINARY_FOLDER else _parse_python
    train = [parse(folder / name, _read_checked(folder / name, strict)) for name in TRAIN_FILES[folder.name]]
    test_path = folder / TEST_FILES[folder.name][0]
    test_images, test_labels = parse(test_path, _read_checked(test_path, strict))
    return CIFAR10(torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
                   test_images, test_labels)


def find_layout(root: Path):
    """The folder holding a known layout: `root/<layout>`, or `root` itself when it is that folder."""
    for name in (BINARY_FOLDER, PYTHON_FOLDER):
        for folder in (root / name, root):
            if folder.name == name and folder.is_dir():
                return folder
    return None


def _not_found_message(root: Path) -> str:
    return (f"CIFAR-10 not found in {root.resolve()}. Expected either {BINARY_FOLDER}/ with "
            f"{', '.join(BINARY_MD5)} (the official binary version) or {PYTHON_FOLDER}/ with "
            f"{', '.join(TRAIN_FILES[PYTHON_FOLDER] + TEST_FILES[PYTHON_FOLDER])} (torchvision's layout). "
            f"Point the data root at the folder that holds one of them (argument or $CIFAR10_ROOT).")


def _official_md5(path: Path):
    return (BINARY_MD5 if path.parent.name == BINARY_FOLDER else PYTHON_MD5)[path.name]


def _read_checked(path: Path, strict: bool) -> bytes:
    """The file's bytes, read once; fails with its name when missing, truncated or (strict) altered."""
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would wait forever for a writer
        raise DatasetError(f"{path} is not a regular file: put the batch file there")
    if not path.is_file():
        raise DatasetError(f"{path} is missing. {_not_found_message(path.parent.parent)}")
    size = path.stat().st_size
    if path.parent.name == BINARY_FOLDER:
        expected = IMAGES_PER_FILE * RECORD_BYTES
        if (strict and size != expected) or size == 0 or size % RECORD_BYTES:
            raise DatasetError(f"{path} has {size:,} bytes; a CIFAR-10 binary batch has {expected:,} "
                               f"({RECORD_BYTES:,}-byte records). The file is truncated or not CIFAR-10.")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path} cannot be read ({error.strerror or error}): check its permissions") from None
    if strict:
        digest, official = hashlib.md5(raw).hexdigest(), _official_md5(path)
        if digest != official:
            raise DatasetError(f"{path} has MD5 {digest}, not the official {official}: the file is "
                               f"corrupted or truncated. Delete it and download CIFAR-10 again.")
    return raw


def _parse_binary(path: Path, raw: bytes):
    records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD_BYTES)
    return records[:, 1:].reshape(-1, *IMAGE_SHAPE).clone(), records[:, 0].long()


# Everything a CIFAR-10 python batch refers to: numpy arrays (under numpy 1's and numpy 2's module names).
PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _BatchUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, numbers and numpy arrays only: a crafted batch file cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which no CIFAR-10 batch does")
        return super().find_class(module, name)


def _parse_python(path: Path, raw: bytes):
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        images = torch.as_tensor(batch[b"data"], dtype=torch.uint8).reshape(-1, *IMAGE_SHAPE)
        labels = torch.as_tensor(batch[b"labels"], dtype=torch.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, ValueError, TypeError) as error:
        raise DatasetError(f"{path} is not a readable CIFAR-10 python batch ({error!r}): truncated or "
                           f"corrupted. Delete it and download CIFAR-10 again.") from error
    return images, labels


def draw_augmentation(n: int, generator: torch.Generator, translate: int, flip: bool):
    """The random part of an augmentation of n images, from a CPU generator so that a run is reproducible whatever
    the device: (shifts (2, n) or None, flips (n,) or None)."""
    shifts = torch.randint(0, 2 * translate + 1, (2, n), generator=generator) if translate else None
    flips = torch.rand(n, generator=generator) < 0.5 if flip else None
    return shifts, flips


def apply_augmentation(images: torch.Tensor, translate: int, shifts, flips) -> torch.Tensor:
    """`images` shifted and flipped as drawn; shifts and flips already on the images' device, so nothing here
    copies from the host (a copy would make the host wait for the GPU's queued work).

    The shifts reflect at the border (as padding with mode="reflect" would), then the flips mirror the result.
    Both only say which source pixel each output pixel takes, so one gather of whole pixels (all channels at once)
    does everything, in one pass over memory instead of one each for padding, cropping, flipping and the layout,
    and its result is channels-last, as the models want it.
    """
    n, c, h, w = images.shape
    rows = torch.arange(h, device=images.device).expand(n, h)
    cols = torch.arange(w, device=images.device).expand(n, w)
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(-1), cols)
    if shifts is not None:
        rows = reflect(rows + (shifts[0, :, None] - translate), h)
        cols = reflect(cols + (shifts[1, :, None] - translate), w)
    pixels = images.permute(0, 2, 3, 1).reshape(n * h * w, c)
    source = (torch.arange(n, device=images.device)[:, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]
    return pixels.index_select(0, source.flatten()).view(n, h, w, c).permute(0, 3, 1, 2)


def reflect(position: torch.Tensor, size: int) -> torch.Tensor:
    """Positions up to size - 1 beyond either edge of 0 .. size - 1, mirrored back inside (the edge not repeated)."""
    return (size - 1) - ((size - 1) - position.abs()).abs()


def epoch_draws(n_images: int, batch_size: int, generator: torch.Generator, translate: int, flip: bool, device):
    """One epoch's order and every batch's (shifts, flips), moved to `device` once for the epoch.

    Drawn in the order a batch-by-batch loop would draw them, so the values (and the generator's state after the
    epoch) are the same; but no batch then copies host to device, which on a GPU would stall every step.
    """
    order = torch.randperm(n_images, generator=generator)
    draws = [draw_augmentation(batch_size, generator, translate, flip)
             for _ in range(steps_per_epoch(n_images, batch_size))]
    shifts, flips = zip(*draws) if draws else ((), ())
    return order.to(device), _stacked_on(shifts, device), _stacked_on(flips, device)


def _stacked_on(parts, device):
    """The batches' draws as one tensor on `device` (one copy), or None when nothing was drawn."""
    return torch.stack(parts).to(device) if parts and parts[0] is not None else None


def to_float(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1], the models' input; channels_last suits oneDNN and tensor cores."""
    x = images.float().div_(255)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def model_input(images: torch.Tensor) -> torch.Tensor:
    """What the models take, from what a user may hold: uint8 images [0, 255] are scaled to [0, 1], float images must
    already be in [0, 1] (ValueError otherwise: dividing them by 255 again would silently ruin every prediction)."""
    images = torch.as_tensor(images)
    if not images.is_floating_point():
        return to_float(images)
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"float images must lie in [0, 1], these go from {low:g} to {high:g}: pass uint8 images "
                         f"(0-255) or scale them to [0, 1]")
    return images.float()


def train_batches(images, labels, batch_size: int, generator: torch.Generator, translate: int = 2,
                  flip: bool = True, channels_last: bool = False, part: slice = slice(None),
                  alternate_flip_epoch: int | None = None):
    """One epoch of shuffled, augmented (x in [0, 1], y) batches; the last partial batch is dropped.

    `part` keeps one slice of every batch: with several processes each trains on its own slice, and as the
    order and the augmentation are drawn for the whole batch, the slices together are the one-process batch.
    alternate_flip_epoch: with flip, mirror image i when i + this epoch number is odd, not at random: every image
    is seen both ways in turn, and no epoch repeats the last one's view of it (airbench's alternating flip).
    """
    alternate = flip and alternate_flip_epoch is not None
    order, shifts, flips = epoch_draws(len(images), batch_size, generator, translate, flip and not alternate,
                                       images.device)
    for step, start in enumerate(range(0, len(images) - batch_size + 1, batch_size)):
        index = order[start:start + batch_size][part]  # only this process's slice is cut and augmented
        flipped = (index + alternate_flip_epoch) % 2 == 1 if alternate else None if flips is None else flips[step][part]
        batch = apply_augmentation(images[index], translate, None if shifts is None else shifts[step][:, part], flipped)
        yield to_float(batch, channels_last), labels[index]
