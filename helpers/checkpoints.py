"""Checkpoints: one file format, one naming rule, and a safe way back to a working model.

A checkpoint is `{"architecture", "model_kwargs", "state_dict", ...plain values}`: the network's class name in
helpers.models, the arguments that rebuild it, and its weights, on the CPU. Final models add the recipe and the
seed that made them; resumable ones (last.pt) add the optimiser, the schedule step and the random states.
Everything loads with weights_only=True, so opening a file never runs code from it.
"""
import math
import os
import pickle
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from .models import build_model
from .recipes import PRESETS, epochs_text, recipe_from_dict

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"  # the committed models, wherever the caller runs from
RESUME_TYPES = {"optimizer": dict, "epoch": int, "step": int, "history": list, "torch_rng": torch.Tensor,
                "generator": torch.Tensor, "recipe": dict, "train_images": int, "config": dict}
RESUME_KEYS = tuple(RESUME_TYPES)
CONFIG_TYPES = {"seed": int, "quick": bool, "preset": str}  # what a run's config holds, as train() saves it
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a 64-bit integer
# What a final model may carry besides its weights, of the kind a reader formats or compares (None: not carried).
CARRIED_TYPES = {"test_acc": (int, float), "seed": int, "preset": str, "test_images": int}
# What torch.load(weights_only=True) accepts: these values, in these containers, and tensors.
PLAIN_VALUES = (str, int, float, complex, bool, type(None), torch.dtype, torch.device)
PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple, set, torch.Size)


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, inconsistent, or not of the kind asked for."""


def model_filename(architecture: str) -> str:
    """The final model's file name in a run's folder: s7net.pt, s7airnet.pt."""
    return f"{architecture.lower()}.pt"


def weights_path(preset: str, seed: int, folder=WEIGHTS) -> Path:
    """Where the committed model of a preset and seed lives: weights/s7airnet-full-seed0.pt in this repository."""
    return Path(folder) / f"{PRESETS[preset].architecture.lower()}-{preset}-seed{seed}.pt"


def on_cpu(value):
    """`value` with every tensor in it moved to the CPU: a GPU run's checkpoint then loads on any machine."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def save_checkpoint(model, path, **extra) -> Path:
    """Write {"architecture", "model_kwargs", "state_dict", **extra} atomically (temporary file, then rename): no
    half-written file, and none left behind when the write fails (a full disk, an interruption).

    CheckpointError when `extra` or the model's arguments hold anything besides tensors and plain values, which
    weights_only loading refuses (the file could never be loaded), and when the file cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = on_cpu(extra)
    odd = first_non_plain({"model_kwargs": model.model_kwargs, **extra})
    if odd:
        raise CheckpointError(f"cannot save {type(model).__name__}: its {odd} is not a plain value (a number, "
                              f"string, list, dict or tensor), so the file could never be loaded with "
                              f"weights_only=True; pass plain values (a name, not a class or an object)")
    state = {k: v.contiguous() for k, v in on_cpu(model.state_dict()).items()}
    saved = {"architecture": type(model).__name__, "model_kwargs": model.model_kwargs, "state_dict": state, **extra}
    write_atomically(path, lambda tmp: torch.save(saved, tmp))
    return path


def write_atomically(path: Path, write) -> None:
    """write(a temporary path beside `path`), then rename it to `path`: a reader never sees half a file, and a
    failed write (a full disk, an interruption) leaves no temporary file and the previous `path` untouched.
    CheckpointError, in one line, when the write fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if not isinstance(error, (OSError, RuntimeError)):
            raise
        reason = error.strerror if isinstance(error, OSError) and error.strerror else \
            f"the write stopped short with {shutil.disk_usage(path.parent).free / 1e6:,.0f} MB free on its disk"
        kept = f"; the {path.name} written before is kept" if path.exists() else ""
        raise CheckpointError(f"cannot write {path} ({reason}){kept}") from None


def first_non_plain(value, where: str = "") -> str | None:
    """Where in `value` (model_kwargs['block'], say) the first object sits that weights_only loading refuses: a
    class, a function, a module, a numpy number; None when every part is plain."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN_VALUES:
        return None
    if type(value) not in PLAIN_CONTAINERS:
        return f"{where} ({type(value).__name__})"
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        odd = first_non_plain(item, f"{where}[{key!r}]" if where else str(key))
        if odd:
            return odd
    return None


def load_checkpoint(path, device="cpu") -> dict:
    """What save_checkpoint wrote, read with weights_only=True; CheckpointError for anything else.

    A FIFO or a device is refused before it is opened: opening one can wait forever for a writer.
    """
    if Path(path).exists() and not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a pickle; our one error line says it all
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} does not exist") from error
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"{path} is not a checkpoint that loads safely: truncated, another kind of file, or "
                              f"holding objects besides tensors and plain values, which are never unpickled as that "
                              f"could run code ({type(error).__name__})") from error
    if not isinstance(checkpoint, dict) or not {"architecture", "model_kwargs", "state_dict"} <= checkpoint.keys():
        raise CheckpointError(f"{path} is not a checkpoint of an S7 network: no architecture, model_kwargs and "
                              f"state_dict")
    if "recipe" in checkpoint:
        try:
            recipe_from_dict(checkpoint["recipe"])
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path} holds a recipe this version cannot run: {error}") from None
    wrong = [f"{key} {checkpoint[key]!r}" for key, kind in CARRIED_TYPES.items()
             if key in checkpoint and not of_kind(checkpoint[key], kind)]
    if wrong:
        raise CheckpointError(f"{path} carries values of the wrong kind: {', '.join(wrong)} (edited by hand?)")
    return checkpoint


def of_kind(value, kind) -> bool:
    """isinstance, but a bool is only a bool, never a number (True would read as seed 1, or 1%)."""
    return isinstance(value, kind) and isinstance(value, bool) == (kind is bool)


def rebuild_model(checkpoint: dict, path="the checkpoint"):
    """The saved network with its weights; CheckpointError when the file's parts do not fit together."""
    architecture = checkpoint["architecture"]
    try:
        model = build_model(architecture, **checkpoint["model_kwargs"])
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path} names a network that cannot be built: {error}") from error
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: its weights do not fit {architecture}({checkpoint['model_kwargs']}): "
                              f"{which_tensors(error)}") from error
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise CheckpointError(f"{path}: its weights hold NaN or infinity ({', '.join(broken[:3])}"
                              f"{f' and {len(broken) - 3} more' if len(broken) > 3 else ''}): not a model to use")
    return model


def which_tensors(error: Exception, shown: int = 3) -> str:
    """load_state_dict's reasons in one line: the tensors missing, unexpected or of another shape, the first few."""
    reasons = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    if not reasons:
        return str(error).strip() or type(error).__name__
    return "; ".join(reasons[:shown]) + (f"; and {len(reasons) - shown} more" if len(reasons) > shown else "")


def load_model(path, device="cpu"):
    """Rebuild the saved network, from a final or a resumable checkpoint, in eval mode."""
    return rebuild_model(load_checkpoint(path, device), path).to(device).eval()


def load_resumable(path) -> dict:
    """A checkpoint written by train(checkpoint_path=...), on the CPU, checked whole, ready to resume."""
    checkpoint = load_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} holds weights only, not a run to resume (no {', '.join(missing)}): "
                              f"resume from the last.pt that training writes beside the final model")
    wrong = [key for key, kind in RESUME_TYPES.items() if not isinstance(checkpoint[key], kind)]
    if wrong:
        raise CheckpointError(f"{path} is not a run this version can resume: its {', '.join(wrong)} not of the kind "
                              f"training saves")
    recipe = recipe_from_dict(checkpoint["recipe"])
    epoch, step, images = checkpoint["epoch"], checkpoint["step"], checkpoint["train_images"]
    if not 0 < epoch <= math.ceil(recipe.epochs) or len(checkpoint["history"]) != epoch:
        raise CheckpointError(f"{path} is not a run this version can resume: epoch {epoch} of {recipe.epochs}, with "
                              f"{len(checkpoint['history'])} epochs of history")
    rebuild_model(checkpoint, path)  # its network, arguments and weights must fit together before any work starts
    if not 0 < step <= epoch * (images // recipe.batch_size):  # each epoch takes at most its full batches
        raise CheckpointError(f"{path} is not a run this version can resume: step {step} after epoch {epoch} of "
                              f"{images} images at batch {recipe.batch_size}")
    config = checkpoint["config"]
    wrong = [f"{key} {config[key]!r}" for key, kind in CONFIG_TYPES.items()
             if key in config and not of_kind(config[key], kind)]
    if wrong:
        raise CheckpointError(f"{path} is not a run this version can resume: its config holds {', '.join(wrong)}")
    if not 0 <= config.get("seed", 0) <= MAX_SEED:
        raise CheckpointError(f"{path} is not a run this version can resume: its config holds seed {config['seed']}, "
                              f"not a seed from 0 to 2**63 - 1")
    return checkpoint


def reported_tta(checkpoint: dict) -> str:
    """The test-time augmentation the model's recipe reports its accuracy with; none for a model saved without one."""
    return recipe_from_dict(checkpoint["recipe"]).tta if "recipe" in checkpoint else "none"


def provenance(checkpoint: dict) -> str:
    """One line saying where a model came from: its network, recipe and seed when the file carries them."""
    parts = [checkpoint["architecture"]]
    if "preset" in checkpoint:
        parts.append(f"preset {checkpoint['preset']!r}")
    if "seed" in checkpoint:
        parts.append(f"seed {checkpoint['seed']}")
    if "recipe" in checkpoint:
        recipe = recipe_from_dict(checkpoint["recipe"])
        parts.append(f"{epochs_text(recipe.epochs)}, batch {recipe.batch_size}, {recipe.precision}")
    if "test_acc" in checkpoint:
        parts.append(f"test accuracy {checkpoint['test_acc']:.2f}% as reported")
    return ", ".join(parts)
