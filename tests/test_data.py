import functools
import hashlib
import http.server
import io
import os
import pickle
import re
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import data as data_module
from helpers import download as download_module
from helpers.data import (
    BINARY_FOLDER,
    CLASSES,
    PYTHON_FOLDER,
    DatasetError,
    apply_augmentation,
    download_cifar10,
    draw_augmentation,
    load_cifar10,
    train_batches,
)
from helpers.download import DownloadError
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
    assert "\n" not in message


def test_every_dataset_error_is_one_line_even_for_a_folder_name_with_a_newline(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_cifar10(tmp_path / "two\nlines", download=False)
    assert "\n" not in str(error.value) and "two lines" in str(error.value)


def test_missing_file_is_named(tmp_path):
    write_binary_layout(tmp_path, per_file=2)
    (tmp_path / BINARY_FOLDER / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match="data_batch_3.bin is missing"):
        load_cifar10(tmp_path, download=False, strict=False)


def test_an_unreadable_file_is_named_not_a_traceback(tmp_path, monkeypatch):
    """chmod 000 as a user would: root (CI) reads it anyway, so the read is made to fail as it does for a user."""
    write_binary_layout(tmp_path, per_file=2)
    unreadable = tmp_path / BINARY_FOLDER / "data_batch_2.bin"
    read_bytes = Path.read_bytes

    def refuse(path):
        if path == unreadable:
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DatasetError, match=r"data_batch_2.bin cannot be read \(Permission denied\): check its "
                                           r"permissions"):
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


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo], ids=["folder", "fifo"])
def test_a_batch_that_is_not_a_regular_file_is_named_as_such_not_as_missing(tmp_path, make):
    write_binary_layout(tmp_path, per_file=2)
    path = tmp_path / BINARY_FOLDER / "data_batch_1.bin"
    path.unlink()
    make(path)
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))} is not a regular file: put the batch file "
                                           f"there$"):
        load_cifar10(tmp_path, download=False, strict=False)


class RunsCode:
    """Unpickling this calls exec: what a crafted batch file could do to whoever loads it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_python_batch_that_would_run_code_is_refused_unread_even_when_not_strict(tmp_path):
    write_python_layout(tmp_path, per_file=2)
    marker = tmp_path / "marker"
    path = tmp_path / PYTHON_FOLDER / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0, 1]}))
    with pytest.raises(DatasetError, match="data_batch_1 is not a readable .* refers to builtins.exec"):
        load_cifar10(tmp_path, download=False, strict=False)
    assert not marker.exists()


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


def archive_of(folder) -> bytes:
    """A .tar.gz of `folder`/cifar-10-batches-py, as the real archive is laid out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder / PYTHON_FOLDER, arcname=PYTHON_FOLDER)
    return buffer.getvalue()


def serve_as_the_archive(monkeypatch, url: str, archive: bytes) -> None:
    """Point the download at `url` and accept `archive` as the official one; no waiting between attempts."""
    monkeypatch.setattr(download_module, "ARCHIVE_URL", url)
    monkeypatch.setattr(download_module, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(download_module, "RETRY_WAIT_S", 0.1)


@pytest.fixture
def served_archive(tmp_path, local_server, monkeypatch):
    """A made-up cifar-10-python.tar.gz on the local server, with the official checksums pointed at it."""
    source = tmp_path / "source"
    written = write_python_layout(source, per_file=4)
    folder, url = local_server
    archive = archive_of(source)
    (folder / "cifar-10-python.tar.gz").write_bytes(archive)
    serve_as_the_archive(monkeypatch, f"{url}/cifar-10-python.tar.gz", archive)
    monkeypatch.setattr(data_module, "PYTHON_MD5", {name: hashlib.md5((source / PYTHON_FOLDER / name).read_bytes())
                                                    .hexdigest() for name in written})
    return written


@pytest.fixture
def silent_server():
    """A loopback socket that accepts connections (the kernel completes them) and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_download_fetches_unpacks_and_verifies_checksums(tmp_path, served_archive):
    root = tmp_path / "fresh"
    data = load_cifar10(root, download=True, strict=True)
    assert (root / PYTHON_FOLDER / "data_batch_5").is_file()
    assert [p.name for p in root.iterdir()] == [PYTHON_FOLDER]  # no archive, no staging folder left
    assert np.array_equal(data.test_images.numpy(), served_archive["test_batch"][0])


def test_corrupted_file_fails_the_checksum(tmp_path, served_archive):
    root = tmp_path / "fresh"
    load_cifar10(root, download=True, strict=True)
    path = root / PYTHON_FOLDER / "data_batch_4"
    path.write_bytes(path.read_bytes().replace(b"labels", b"LABELS"))
    with pytest.raises(DatasetError, match="data_batch_4 has MD5 .* not the official"):
        load_cifar10(root, download=True, strict=True)


def test_failed_download_says_where_it_looked_in_one_line(tmp_path, local_server, monkeypatch):
    monkeypatch.setattr(download_module, "ARCHIVE_URL", f"{local_server[1]}/absent.tar.gz")
    with pytest.raises(DatasetError, match="CIFAR-10 not found in .* The download failed too: .*absent.tar.gz "
                                           "answered HTTP 404") as error:
        load_cifar10(tmp_path / "root", download=True)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("as_proxy", [False, True])
def test_a_silent_server_fails_the_download_quickly_naming_the_timeout(tmp_path, silent_server, monkeypatch,
                                                                       as_proxy):
    monkeypatch.setattr(download_module, "RETRY_WAIT_S", 0.1)
    if as_proxy:  # the download goes through $http_proxy, as urllib's do
        for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", silent_server)
        monkeypatch.setattr(download_module, "ARCHIVE_URL", "http://cifar.invalid/cifar-10-python.tar.gz")
    else:
        monkeypatch.setattr(download_module, "ARCHIVE_URL", f"{silent_server}/cifar-10-python.tar.gz")
    root = tmp_path / "new" / "root"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="failed 2 times, the last time: no answer within the 1 s timeout"):
        download_cifar10(root, timeout=1, attempts=2)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []  # neither the root nor its parent was left behind


class TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole archive, sends half of it and hangs up: a connection cut mid-transfer."""

    archive = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.archive)))
        self.end_headers()
        self.wfile.write(self.archive[:len(self.archive) // 2])
        self.close_connection = True


def test_a_cut_transfer_is_a_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    write_python_layout(tmp_path / "source", per_file=4)
    archive = archive_of(tmp_path / "source")
    handler = type("Handler", (TruncatingHandler,), {"archive": archive})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve_as_the_archive(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}/a.tar.gz", archive)
    root = tmp_path / "root"
    root.mkdir()
    try:
        with pytest.raises(DownloadError, match=f"the connection closed after {len(archive) // 2:,} of "
                                               f"{len(archive):,} bytes"):
            download_cifar10(root, timeout=1, attempts=2)
    finally:
        server.shutdown()
        server.server_close()
    assert list(root.iterdir()) == []


class TricklingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes and sends one every 50 ms, stopping by itself after 100 of them (5 s)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:  # the client gave up: so does the server
                return
            time.sleep(0.05)
        self.close_connection = True


def test_a_trickling_server_fails_the_download_at_the_minimum_rate(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TricklingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(download_module, "ARCHIVE_URL", f"http://127.0.0.1:{server.server_address[1]}/a.tar.gz")
    started = time.monotonic()
    try:
        with pytest.raises(DownloadError, match=r"the last time: (1[5-9]|2\d) bytes arrived in 1 s, fewer than the "
                                                r"32,768 bytes/s asked for$"):
            download_cifar10(tmp_path / "root", timeout=1, attempts=1)
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 2.5  # the trickle would have lasted 5 s
    assert not (tmp_path / "root").exists()


def test_a_truncated_archive_fails_its_md5_and_leaves_nothing(tmp_path, served_archive, local_server):
    served = local_server[0] / "cifar-10-python.tar.gz"
    served.write_bytes(served.read_bytes()[:-100])  # served whole, with a matching Content-Length
    with pytest.raises(DownloadError, match="failed 2 times, the last time: the .* bytes received have MD5 .*, not"):
        download_cifar10(tmp_path / "root", timeout=1, attempts=2)
    assert not (tmp_path / "root").exists()


def test_an_archive_member_escaping_its_folder_is_refused(tmp_path, local_server, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        evil = tarfile.TarInfo("../escaped.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    (local_server[0] / "evil.tar.gz").write_bytes(buffer.getvalue())
    serve_as_the_archive(monkeypatch, f"{local_server[1]}/evil.tar.gz", buffer.getvalue())
    root = tmp_path / "deep" / "root"
    with pytest.raises(DownloadError, match="holds '../escaped.txt', which is not a plain file inside"):
        download_cifar10(root)
    assert not (tmp_path / "deep").exists() and not list(tmp_path.rglob("escaped.txt"))


def test_real_data_is_the_official_cifar10(real_data_root):
    data = load_cifar10(real_data_root, download=False, strict=True)  # checks every official MD5
    assert data.train_images.shape == (50_000, 3, 32, 32) and data.test_images.shape == (10_000, 3, 32, 32)
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert data.train_images[0, 0, 0, :3].tolist() == [59, 43, 50]
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10


def _images(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def augment(images, generator, translate, flip):
    """One batch augmented as train_batches does it: the draws, then their application."""
    return apply_augmentation(images, translate, *draw_augmentation(len(images), generator, translate, flip))


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
    x, y = batches[0]  # the labels are the image numbers here
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == 96  # shuffled without repeats
