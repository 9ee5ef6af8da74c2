"""What the notebook shows that depends on its settings, computed so that its prose is true for every preset: a
recipe in a few lines, the training described from the recipe itself, a committed model or a new training, and the
table that sets the networks side by side."""
import textwrap
from dataclasses import dataclass, fields

from torch import nn

from .checkpoints import WEIGHTS, CheckpointError, load_checkpoint, provenance, rebuild_model, weights_path
from .evaluation import evaluate
from .models import build_model, count_parameters
from .precision import decide_precision
from .receptive_field import final_rf, rf_table
from .recipes import PRESETS, Recipe, epochs_text, recipe_from_dict, resolve, training_steps
from .training import seed_everything, train


def recipe_lines(recipe: Recipe, width: int = 100) -> str:
    """The settings where the recipe differs from Recipe()'s defaults, as `field=value`, wrapped to `width`."""
    default = Recipe()
    changed = [f"{f.name}={getattr(recipe, f.name)!r}" for f in fields(Recipe)
               if getattr(recipe, f.name) != getattr(default, f.name)]
    return textwrap.fill(", ".join(changed) or "the defaults", width, subsequent_indent="  ")


def training_prose(preset: str, n_images: int = 50_000) -> str:
    """Markdown describing how the preset trains and evaluates, read from its recipe: every sentence holds for it."""
    run = resolve(preset)
    r = run.recipe
    if r.muon_lr is not None:
        optimiser = (f"**Muon** (`helpers/muon.py`, after Keller Jordan's airbench94_muon) trains the convolution "
                     f"filters that mix channels, at a peak learning rate of {r.muon_lr:g}: each step follows the "
                     f"momentum of the gradient with every direction it holds evened out (orthogonalised), which "
                     f"learns far faster in few epochs. {'Nesterov ' if r.nesterov else ''}SGD with momentum "
                     f"{r.momentum:g} trains the other weights")
    else:
        optimiser = f"{'Nesterov ' if r.nesterov else 'Plain '}SGD with momentum {r.momentum:g} trains every weight"
    if r.bias_lr_scale != 1:
        optimiser += f", the BatchNorm shifts at {r.bias_lr_scale:g} times the learning rate of the others"
    if r.schedule == "triangular":
        schedule = (f"The learning rate rises linearly to {r.lr:g} over the first {r.warmup:.0%} of the steps, then "
                    f"falls linearly to zero at the last")
    else:
        schedule = f"The learning rate stays at {r.lr:g} throughout, as the PyTorch tutorial trains"
    views = [f"random shifts of up to {r.translate} pixels (reflecting at the border)"] if r.translate else []
    if r.flip:
        views.append("horizontal flips that alternate from epoch to epoch (each image seen both ways in turn)"
                     if r.alternate_flip else "random horizontal flips")
    augmentation = f"Each batch is augmented on the device: {' and '.join(views)}" if views else \
        "No augmentation: every image is seen as it is"
    smoothing = f", with label smoothing {r.label_smoothing:g}" if r.label_smoothing else ""
    tta = {"none": "Predictions use the image alone.",
           "flip": "At test time each prediction averages the image and its mirror (TTA).",
           "flip-translate": "At test time each prediction averages the image, its mirror and one-pixel shifts of "
                             "both (TTA); the plain accuracy, the network alone, is reported beside it."}[r.tta]
    precision = ("The arithmetic is chosen per device before training (`helpers/precision.py`): bf16 on a GPU that "
                 "has it natively, fp16 on one that does not, and on a CPU bf16 where it has bf16 matrix units (AMX, "
                 "or an AMD with AVX512-BF16), else fp32" if r.precision == "auto" else f"It trains in {r.precision}")
    return (f"**Preset `{preset}`**: {run.architecture} for {epochs_text(r.epochs)} at batch {r.batch_size} "
            f"({training_steps(n_images, r):,} steps). {optimiser}. {schedule}. {augmentation}{smoothing}. {tta} "
            f"{precision}.")


@dataclass
class Obtained:
    """A preset's network, trained here or loaded from weights/, with the recipe and history of the run that trained
    it (the recipe's precision the one it trained in)."""
    preset: str
    model: nn.Module
    history: list
    source: str  # "trained here", or "loaded weights/<file>: <where it came from>"
    recipe: Recipe


def committed_seeds(preset: str) -> list[int]:
    """The seeds of the preset whose model is committed in weights/."""
    prefix = weights_path(preset, 0).name.rsplit("seed", 1)[0] + "seed"
    return sorted(int(p.stem[len(prefix):]) for p in WEIGHTS.glob(f"{prefix}*.pt") if p.stem[len(prefix):].isdigit())


def require_committed(presets, seed: int) -> None:
    """Before anything trains: a clear sentence for each preset whose model for this seed is not in weights/."""
    missing = [p for p in presets if not weights_path(p, seed).exists()]
    if missing:
        raise CheckpointError("; ".join(
            f"weights/ holds no {weights_path(p, seed).name} (committed seeds of {p}: "
            f"{', '.join(map(str, committed_seeds(p))) or 'none'})" for p in missing) +
            f". Set SEED to a committed one, or LOAD_WEIGHTS = False to train seed {seed} here "
            f"(python -m helpers.train --preset {missing[0]} --seed {seed} does the same from a terminal).")


def obtain(preset: str, seed: int, load: bool, data, device, quick: bool = False) -> Obtained:
    """The preset's committed model for this seed (load), or the network trained here from that seed."""
    if load:
        path = weights_path(preset, seed)
        checkpoint = load_checkpoint(path)
        model = rebuild_model(checkpoint, path).to(device)
        return Obtained(preset, model, checkpoint.get("history", []),
                        f"loaded weights/{path.name}: {provenance(checkpoint)}", recipe_from_dict(checkpoint["recipe"]))
    run = resolve(preset, quick=quick)
    recipe, precision_line = decide_precision(run.recipe, device)
    print(precision_line)
    generator = seed_everything(seed)  # then the network: its initial weights come from the seed too
    model = build_model(run.architecture, **run.model_kwargs)
    return Obtained(preset, model, train(model, data, recipe, generator, device), "trained here", recipe)


def comparison_table(obtained, data) -> list[dict]:
    """One row per network: parameters, receptive field, epochs, training time, plain and TTA accuracy on data's
    test images, all measured here (the time from the run's history: a loaded model's from its own run)."""
    rows = []
    for item in obtained:
        recipe = PRESETS[item.preset].recipe
        seconds = sum(h["seconds"] for h in item.history)
        rows.append({"network (preset)": f"{type(item.model).__name__} ({item.preset})",
                     "params": count_parameters(item.model), "RF px": final_rf(rf_table(item.model)),
                     "epochs": f"{recipe.epochs:g}", "train s": f"{seconds:.0f}" if item.history else "-",
                     "test acc": f"{evaluate(item.model, data.test_images, data.test_labels):.2f}%",
                     "with TTA": f"{evaluate(item.model, data.test_images, data.test_labels, recipe.tta):.2f}% "
                                  f"({recipe.tta})", "model": item.source})
    return rows
