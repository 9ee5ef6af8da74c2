"""Checkpoints: one file format, one naming rule, and a safe way back to a working model.

A checkpoint is `{"architecture", "model_kwargs", "state_dict", ...plain values}`: the network's class name in
helpers.models, the arguments that rebuild it, and its weights, on the CPU. Final models add the recipe and the
seed that made them; resumable ones (last.pt) add the optimiser, the schedule step and the random states.
Everything loads with weights_only=True, so opening a file never runs code from it.
"""
import math
import os
import pickle
import warnings
from pathlib import Path

import torch

from .models import build_model
from .recipes import PRESETS, epochs_text, recipe_from_dict

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"  # the committed models, wherever the caller runs from
RESUME_TYPES = {"optimizer": dict, "epoch": int, "step": int, "history": list, "torch_rng": torch.Tensor,
                "generator": torch.Tensor, "recipe": dict, "train_images": int, "config": dict}
RESUME_KEYS = tuple(RESUME_TYPES)


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
    half-written file. `extra` holds only tensors and plain values, so that weights_only loading works."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in on_cpu(model.state_dict()).items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"architecture": type(model).__name__, "model_kwargs": model.model_kwargs, "state_dict": state,
                **on_cpu(extra)}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path, device="cpu") -> dict:
    """What save_checkpoint wrote, read with weights_only=True; CheckpointError for anything else."""
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
    return checkpoint


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
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: its weights do not fit {architecture}({checkpoint['model_kwargs']}): "
                              f"{first_line}") from error
    return model


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
    epoch, epochs = checkpoint["epoch"], recipe_from_dict(checkpoint["recipe"]).epochs
    if not 0 < epoch <= math.ceil(epochs) or len(checkpoint["history"]) != epoch:
        raise CheckpointError(f"{path} is not a run this version can resume: epoch {epoch} of {epochs}, with "
                              f"{len(checkpoint['history'])} epochs of history")
    rebuild_model(checkpoint, path)  # its network, arguments and weights must fit together before any work starts
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
