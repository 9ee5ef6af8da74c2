"""A run's folder (--out): checked before any training, held by one training at a time, replaced only when asked.

A folder holds one run: its final model (named by its network: s7airnet.pt, s7net.pt), history.json, and
last.pt, the state to resume from, written after every epoch. Nothing a user had is removed before the run that
replaces it has written its own.
"""
import shlex
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .checkpoints import CheckpointError, load_resumable, model_filename
from .models import ARCHITECTURES
from .recipes import ConfigError, epoch_count, epochs_text, recipe_from_dict

try:
    import fcntl  # POSIX: a lock the system releases when its process ends, however it ends
except ImportError:  # Windows: runs are not locked
    fcntl = None

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
    models = [p.name for p in out.glob("*.pt") if p.stem in {name.lower() for name in ARCHITECTURES}]
    last = out / "last.pt"
    if last.exists():
        try:
            saved = load_resumable(last)
        except CheckpointError as error:
            return f"a last.pt that cannot be resumed ({error})"
        if saved["epoch"] < epoch_count(recipe_from_dict(saved["recipe"])):
            return f"an unfinished run (epoch {saved['epoch']} of {epochs_text(saved['recipe']['epochs'])})"
    if models or (out / "history.json").exists():
        return f"a finished run ({', '.join(sorted(models)) or 'history.json'})"
    return None


@contextmanager
def claimed(out: Path, overwrite: bool = False, resuming: bool = False):
    """Hold `out` for one training: a writable folder, no other training writing to it, and (unless resuming its
    own run) no run in it unless `overwrite`. Two trainings started into one folder cannot both write there."""
    writable_folder(out)
    with open(out / LOCK, "w") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"another training is writing to {out} now: wait for it, or choose another "
                                  f"--out") from None
        found = None if resuming or overwrite else run_in(out)
        if found and found.startswith("an unfinished run"):
            raise ConfigError(f"{out} holds {found}: continue it with `{train_command('--resume', out / 'last.pt')}`, "
                              f"choose another --out, or pass --overwrite to start over")
        if found:
            raise ConfigError(f"{out} holds {found}: choose another --out, or pass --overwrite to replace it (its "
                              f"files stay until this run writes its own)")
        yield out


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
