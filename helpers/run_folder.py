"""A run's folder (--out): checked before any training, held by one training at a time, replaced only when asked.

A folder holds one run: its final model (named by its network: s7airnet.pt, s7net.pt), history.json, and
last.pt, the state to resume from, written after every epoch. Nothing a user had is removed before the run that
replaces it has written its own.
"""
import shlex
import tempfile
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .checkpoints import CheckpointError, load_resumable, model_filename
from .errors import ConfigError
from .models import ARCHITECTURES
from .recipes import epoch_count, epochs_text, recipe_from_dict

LOCK = ".lock"  # stays in the folder: removing it would let two trainings each lock a file of that name


def train_command(*args) -> str:
    """A `python -m helpers.train` command line, quoted so that it can be pasted into a shell as printed."""
    return shlex.join(["python", "-m", "helpers.train", *map(str, args)])


def writable_folder(out: Path) -> None:
    """Create `out` if needed; ConfigError when it is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as error:
        raise ConfigError(f"cannot write to {out} ({error.strerror or error}): choose another --out") from None


def run_in(out: Path) -> str | None:
    """What run the folder holds, in words (None when it holds none)."""
    last = out / "last.pt"
    if last.exists():
        try:
            saved = load_resumable(last)
        except CheckpointError as error:
            return f"a last.pt that cannot be resumed ({error})"
        if saved["epoch"] < epoch_count(recipe_from_dict(saved["recipe"])):
            return f"an unfinished run (epoch {saved['epoch']} of {epochs_text(saved['recipe']['epochs'])})"
    return finished_run_in(out)


def finished_run_in(out: Path) -> str | None:
    """The finished run the folder holds (its final model or history.json), in words; None when there is none."""
    models = [p.name for p in out.glob("*.pt") if p.stem in {name.lower() for name in ARCHITECTURES}]
    if models or (out / "history.json").exists():
        return f"a finished run ({', '.join(sorted(models)) or 'history.json'})"
    return None


@contextmanager
def held_run_folder(out: Path, overwrite: bool = False, resuming: bool = False):
    """Hold `out` for one training: a writable folder, no other training writing to it, and no run in it unless
    `overwrite` (resuming, its own unfinished last.pt excepted: a finished run is replaced only when asked, so a
    last.pt copied into another run's folder cannot delete that run's model). Two trainings started into one folder
    cannot both write there."""
    writable_folder(out)
    with held_lock(out):
        found = None if overwrite else finished_run_in(out) if resuming else run_in(out)
        if found and found.startswith("an unfinished run"):
            raise ConfigError(f"{out} holds {found}: continue it with `{train_command('--resume', out / 'last.pt')}`, "
                              f"choose another --out, or pass --overwrite to start over")
        if found:
            instead = "resume a copy of last.pt in another folder" if resuming else "choose another --out"
            raise ConfigError(f"{out} holds {found}: {instead}, or pass --overwrite to replace it (its files stay "
                              f"until this run writes its own)")
        yield out


@contextmanager
def held_lock(out: Path):
    """The folder's lock file, locked while the caller runs, by filelock: a lock the system releases when its
    process ends, however it ends, on POSIX and Windows alike. The file is opened without following a link (a .lock
    linked to a user's file must not touch it). ConfigError when another training holds it or it is not a plain
    file."""
    lock = FileLock(out / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"another training is writing to {out} now: wait for it, or choose another --out") from None
    except OSError as error:
        raise ConfigError(f"{out / LOCK} is not a plain file that can lock the folder ({error.strerror or error}): "
                          f"remove it, or choose another --out") from None
    try:
        yield
    finally:
        lock.release()


def remove_other_runs(out: Path, architecture: str) -> None:
    """After a run replacing another (--overwrite) saved its final model: the other network's final model goes,
    so that the folder holds one run's files only."""
    for name in ARCHITECTURES:
        if name != architecture:
            (out / model_filename(name)).unlink(missing_ok=True)


def resume_hint(last: Path) -> str:
    """What an interrupted run kept, and the exact command that goes on from it."""
    try:
        saved = load_resumable(last)
    except CheckpointError:
        return "stopped before the first epoch ended; nothing was saved"
    if saved["epoch"] >= epoch_count(recipe_from_dict(saved["recipe"])):
        return (f"training finished (epoch {saved['epoch']} is saved in {last}) but the final model was not written; "
                f"write it with: {train_command('--resume', last)}")
    return f"epoch {saved['epoch']} is saved in {last}; go on with: {train_command('--resume', last)}"
