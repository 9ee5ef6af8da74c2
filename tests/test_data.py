import functools
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest
import torch

from helpers import data as data_module
from helpers.data import (BINARY_FOLDER, CLASSES, PYTHON_FOLDER, DatasetError, augment, load_cifar10,
                          train_batches)
from tests.conftest import write_binary_layout, write_python_layout


@pytest.mark.parametrize("layout, write", [(BINARY_FOLDER, write_binary_layout),
                                           (PYTHON_FOLDER, write_python_layout)])
def test_both_layouts_read_pixels_labels_and_order(tmp_path, layout, write):
    written = write(tmp_path, per_file=3)
    data = load_cifar10(tmp_path, download=False, strict=False)
    names = list(written)
    assert data.train_images.shape == (15, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (3, 3, 32, 32)
    expected_train = np.concatenate([written[n][0] for n in names[:5]])
    assert np.array_equal(data.train_images.numpy(), expected_train)
    assert data.train_labels.tolist() == np.concatenate([written[n][1] for n in names[:5]]).tolist()
    assert np.array_equal(data.test_images.numpy(), written[names[5]][0])
    assert data.classes == CLASSES


def test_root_may_be_the_layout_folder_itself(tmp_path):
    write_binary_layout(tmp_path, per_file=2)
    data = load_cifar10(tmp_path / BINARY_FOLDER, download=False, strict=False)
    assert len(data.train_images) == 10


def test_missing_root_without_download_names_folder_and_layouts(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_cifar10(tmp_path / "nowhere", download=False)
    message = str(error.value)
    assert str((tmp_path / "nowhere").resolve()) in message
    assert BINARY_FOLDER in message and PYTHON_FOLDER in message and "data_batch_1.bin" in message


def test_missing_file_is_named(tmp_path):
    write_binary_layout(tmp_path, per_file=2)
    (tmp_path / BINARY_FOLDER / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match="data_batch_3.bin is missing"):
        load_cifar10(tmp_path, download=False, strict=False)


def test_truncated_binary_file_is_caught_even_when_not_strict(tmp_path):
    write_binary_layout(tmp_path, per_file=2)
    path = tmp_path / BINARY_FOLDER / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="test_batch.bin has 6,046 bytes.*truncated"):
        load_cifar10(tmp_path, download=False, strict=False)


def test_strict_mode_rejects_files_that_are_not_the_official_ones(tmp_path):
    write_binary_layout(tmp_path, per_file=2)
    with pytest.raises(DatasetError, match="30,730,000"):
        load_cifar10(tmp_path, download=False)


def test_truncated_python_batch_gives_a_clear_error(tmp_path):
    write_python_layout(tmp_path, per_file=2)
    path = tmp_path / PYTHON_FOLDER / "data_batch_2"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetError, match="data_batch_2 is not a readable CIFAR-10 python batch"):
        load_cifar10(tmp_path, download=False, strict=False)


def test_no_download_when_data_is_present(tmp_path, monkeypatch):
    write_python_layout(tmp_path, per_file=2)
    monkeypatch.setattr(data_module, "download_cifar10", lambda root: pytest.fail("tried to download"))
    assert len(load_cifar10(tmp_path, strict=False).test_images) == 2


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on loopback serving tmp_path/served: the download code runs for real, offline."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def served_archive(tmp_path, local_server, monkeypatch):
    """A made-up cifar-10-python.tar.gz on the local server, with torchvision's checksums pointed at it."""
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    source = tmp_path / "source"
    written = write_python_layout(source, per_file=4)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / PYTHON_FOLDER, arcname=PYTHON_FOLDER)
    folder, url = local_server
    (folder / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    md5 = {name: hashlib.md5((source / PYTHON_FOLDER / name).read_bytes()).hexdigest() for name in written}
    monkeypatch.setattr(TorchvisionCIFAR10, "url", f"{url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(TorchvisionCIFAR10, "tgz_md5", hashlib.md5(buffer.getvalue()).hexdigest())
    monkeypatch.setattr(TorchvisionCIFAR10, "train_list", [[n, md5[n]] for n in list(written)[:5]])
    monkeypatch.setattr(TorchvisionCIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    return written


def test_download_fetches_unpacks_and_verifies_checksums(tmp_path, served_archive):
    root = tmp_path / "fresh"
    data = load_cifar10(root, download=True, strict=True)
    assert (root / PYTHON_FOLDER / "data_batch_5").is_file()
    assert np.array_equal(data.test_images.numpy(), served_archive["test_batch"][0])


def test_corrupted_file_fails_the_checksum(tmp_path, served_archive):
    root = tmp_path / "fresh"
    load_cifar10(root, download=True, strict=True)
    path = root / PYTHON_FOLDER / "data_batch_4"
    path.write_bytes(path.read_bytes().replace(b"labels", b"LABELS"))
    with pytest.raises(DatasetError, match="data_batch_4 has MD5 .* not the official"):
        load_cifar10(root, download=True, strict=True)


def test_failed_download_says_where_it_looked(tmp_path, local_server, monkeypatch):
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    monkeypatch.setattr(TorchvisionCIFAR10, "url", f"{local_server[1]}/absent.tar.gz")
    with pytest.raises(DatasetError, match="(?s)CIFAR-10 not found in .*The download failed too: HTTP Error 404"):
        load_cifar10(tmp_path / "root", download=True)


def test_real_data_is_the_official_cifar10(real_data_root):
    data = load_cifar10(real_data_root, download=False, strict=True)  # checks every official MD5
    assert data.train_images.shape == (50_000, 3, 32, 32) and data.test_images.shape == (10_000, 3, 32, 32)
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert data.train_images[0, 0, 0, :3].tolist() == [59, 43, 50]
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10


def _images(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_flip_mirrors_about_half_the_images_and_nothing_else():
    images = _images()
    out = augment(images, torch.Generator().manual_seed(1), translate=0, flip=True)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_translate_shifts_each_image_within_the_padding():
    images = _images()
    r = 2
    out = augment(images, torch.Generator().manual_seed(2), translate=r, flip=False)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (r,) * 4, mode="reflect")
    shifts = []
    for o, p in zip(out, padded):
        matches = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)
                   if torch.equal(o, p[:, dy:dy + 32, dx:dx + 32])]
        assert matches, "every output must be a crop of the reflect-padded input"
        shifts.append(matches[0])
    assert len(set(shifts)) > 10  # the shifts really vary
    assert sum(not torch.equal(o, i) for o, i in zip(out, images)) > 48  # and pixels really change


def test_augmentation_is_reproducible_from_the_seed():
    images = _images()
    a = augment(images, torch.Generator().manual_seed(3), translate=2, flip=True)
    b = augment(images, torch.Generator().manual_seed(3), translate=2, flip=True)
    assert torch.equal(a, b)


def test_train_batches_are_floats_in_unit_range_and_cover_the_epoch():
    images, labels = _images(100), torch.arange(100)
    batches = list(train_batches(images, labels, 32, torch.Generator().manual_seed(0), channels_last=True))
    assert len(batches) == 3  # 100 // 32, the partial batch dropped
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == 96  # shuffled without repeats
