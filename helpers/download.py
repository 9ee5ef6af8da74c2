"""Downloading CIFAR-10 when it is missing: torchvision's python-layout archive, fetched with a timeout per read, a
minimum rate and a few retries, MD5-checked and unpacked in a staging folder, so that a failure never leaves a
partial copy that looks complete and never hangs."""
import hashlib
import http.client
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# The archive torchvision.datasets.CIFAR10 downloads (same URL, name and MD5), which unpacks to the python layout.
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_FOLDER = "cifar-10-batches-py"  # what the archive unpacks to: the python layout
DOWNLOAD_TIMEOUT_S = 30  # per connect and per read: a server that accepts and then says nothing must not hang us
# A server that trickles bytes passes every per-read timeout: ask for this many bytes a second over each timeout's span
DOWNLOAD_MIN_RATE = 32 * 1024  # the real archive (170 MB) then takes at most about 90 minutes
DOWNLOAD_ATTEMPTS = 3
RETRY_WAIT_S = 2  # before attempt n + 1, wait n times this: a short backoff for a flaky network


class DownloadError(OSError):
    """The archive could not be fetched or unpacked; the message says why (timeout, HTTP status, MD5, ...)."""


class _TransferError(Exception):
    """A download that ended early or did not match its MD5: worth another attempt."""


def download_cifar10(root: Path, timeout: float = DOWNLOAD_TIMEOUT_S, attempts: int = DOWNLOAD_ATTEMPTS) -> None:
    """Fetch the python-layout archive and unpack it into `root`; a failure leaves nothing behind.

    The archive is downloaded and unpacked in a hidden staging folder inside `root`, and cifar-10-batches-py/
    moves into place only once it passed its MD5 and unpacked completely, so no partial copy ever looks
    complete. A root (or parents) that this call had to create is removed again when it fails.
    """
    root = Path(root)
    created = _first_missing(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".cifar-10-download-", dir=root) as staging:
            archive, unpacked = Path(staging) / ARCHIVE_NAME, Path(staging) / "unpacked"
            _fetch(ARCHIVE_URL, archive, timeout, attempts)
            _extract(archive, unpacked)
            _move_into_place(unpacked / ARCHIVE_FOLDER, root / ARCHIVE_FOLDER)
    except (OSError, tarfile.TarError, _TransferError) as error:
        raise DownloadError(str(error)) from error
    finally:  # on any failure, Ctrl-C included, leave no root that was not there before
        if created is not None and not (root / ARCHIVE_FOLDER).is_dir():
            shutil.rmtree(created, ignore_errors=True)


def _first_missing(path: Path):
    """The outermost folder of `path` that does not exist yet (None when it exists): what mkdir would create."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _fetch(url: str, path: Path, timeout: float, attempts: int) -> None:
    """Download `url` into `path` and check its MD5, retrying failures that another attempt may cure."""
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(url, path, timeout)
        except urllib.error.HTTPError as error:
            if error.code < 500:  # the file is not there: asking again will not change that
                raise _TransferError(f"{url} answered HTTP {error.code} {error.reason}") from error
            failure = f"HTTP {error.code} {error.reason}"
        except (OSError, http.client.HTTPException, _TransferError) as error:
            failure = _describe(error, timeout)
        if attempt < attempts:
            time.sleep(RETRY_WAIT_S * attempt)
    raise _TransferError(f"{url} failed {attempts} times, the last time: {failure}")


def _fetch_once(url: str, path: Path, timeout: float) -> None:
    """One attempt: stream the body to `path`, then check its length and MD5.

    A fresh opener reads $http_proxy, $https_proxy and $no_proxy now (urlopen's cached one read them once). read1
    returns what has arrived instead of waiting for a full chunk, so that the rate is checked as bytes trickle in.
    """
    digest, size = hashlib.md5(), 0
    opener = urllib.request.build_opener()
    with opener.open(url, timeout=timeout) as response, open(path, "wb") as file:
        expected = response.headers.get("Content-Length")
        span_start, span_size = time.monotonic(), 0
        while chunk := response.read1(1 << 20):
            file.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            span_size += len(chunk)
            if time.monotonic() - span_start >= timeout:
                if span_size < DOWNLOAD_MIN_RATE * timeout:
                    raise _TransferError(f"{span_size:,} bytes arrived in {timeout:g} s, fewer than the "
                                         f"{DOWNLOAD_MIN_RATE:,} bytes/s asked for")
                span_start, span_size = time.monotonic(), 0
    if expected is not None and size != int(expected):
        raise _TransferError(f"the connection closed after {size:,} of {int(expected):,} bytes")
    if digest.hexdigest() != ARCHIVE_MD5:
        raise _TransferError(f"the {size:,} bytes received have MD5 {digest.hexdigest()}, not {ARCHIVE_MD5}")


def _describe(error: Exception, timeout: float) -> str:
    """A timeout named as one (urllib wraps a connect timeout in URLError), anything else as it says."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return f"no answer within the {timeout:g} s timeout"
    return str(reason) or type(reason).__name__


def _extract(archive: Path, folder: Path) -> None:
    """Unpack `archive` into `folder`, refusing links, devices and any member that would land outside it."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            inside = (folder / member.name).resolve().is_relative_to(folder.resolve())
            if not (member.isfile() or member.isdir()) or not inside:
                raise tarfile.ExtractError(f"{archive.name} holds {member.name!r}, which is not a plain file "
                                           f"inside the archive's folder: refused")
        tar.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def _move_into_place(unpacked: Path, target: Path) -> None:
    """Rename the complete folder to its final name; another process may have just put its own copy there."""
    if not unpacked.is_dir():
        raise tarfile.ExtractError(f"the archive holds no {ARCHIVE_FOLDER}/ folder")
    try:
        unpacked.rename(target)
    except OSError:
        if not target.is_dir():
            raise
