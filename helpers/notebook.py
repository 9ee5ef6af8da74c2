"""What the notebook shows that depends on its settings, computed so that its prose is true for every preset: the
training described from the recipe itself, a committed model or a new training, and the table that sets the
networks side by side.

The notebook imports everything it calls from here and from `helpers` itself, so that moving a module inside the
package changes these imports, which the tests run, and never the notebook's.
"""
import io
from dataclasses import dataclass, field

import matplotlib

from torch import nn

from .checker.receptive_field import empirical_rf, final_rf, format_rf_table, rf_table
from .checker.spec import check_s7, format_checks

from .checkpoints import (
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    model_filename,
    rebuild_model,
    save_checkpoint,
    weights_path,
)
from .data import default_data_root, load_cifar10
from .evaluation import accuracy, predict
from .lecture.describe import airnet_ideas, block_table, markdown_table, network_source
from .lecture.erf import erf_table, image_mosaic, noise_images
from .lecture.erf_figures import erf_figure, gridding_figure
from .lecture.gradcam import evidence_summary, gradcam_mistakes_figure, mistake_maps
from .lecture.lecture_points import (
    dilation_figure,
    overlap_figure,
    pointwise_demo,
    pointwise_text,
    separable_costs,
    transposed_size_table,
    worked_example_text,
)
from .lecture.plots import confusion_figure, misclassified_gallery, sample_grid, training_curves
from .lecture.readings import (
    confusion_reading,
    cost_reading,
    curve_reading,
    erf_reading,
    gradcam_reading,
    rf_reading,
    rules_reading,
    size_steps,
)
from .lecture.records import NO_TTA, benchmark_runs, duration_text, here_note, seed_range, time_rows
from .lecture.timing import CellClock, evaluation_rows, time_reading
from .lecture.zoo import (
    checkerboard_figure,
    conv_table,
    format_table,
    rf_growth,
    rf_growth_figure,
    upsampler_reading,
    upsampler_table,
)
from .loop import seed_everything, train
from .models import (
    build_model,
    count_parameters,
    parameter_split,
)
from .recipes import (
    PRESETS,
    Recipe,
    epochs_text,
    quick_data,
    quick_mode_requested,
    recipe_from_dict,
    resolve,
    training_steps,
)
from .runtime.device import describe_device, pick_device, processor_name
from .start import start_run
from .user_network import train_network

# What the notebook's cells import from here: its own functions and the library's, gathered in one place.
__all__ = ["CellClock", "PRESETS", "STORY", "airnet_ideas", "benchmark_runs", "block_table", "build_model",
           "check_s7", "checkerboard_figure", "comparison_table", "confusion_figure", "confusion_reading",
           "conv_table", "cost_reading", "count_parameters", "curve_reading", "default_data_root",
           "describe_device", "dilation_figure", "duration_text", "empirical_rf", "erf_figure", "erf_reading",
           "erf_table", "evaluation_rows", "evidence_summary", "final_rf", "format_checks", "format_rf_table",
           "format_table", "gradcam_mistakes_figure", "gradcam_reading", "gridding_figure", "here_note",
           "how_it_ran", "image_mosaic", "load_cifar10", "markdown_table", "misclassified_gallery", "mistake_maps",
           "model_filename", "network_source", "noise_images", "obtain", "overlap_figure", "parameter_split",
           "pick_device", "plan", "pointwise_demo", "pointwise_text", "processor_name", "quick_data",
           "quick_mode_requested", "require_committed", "resolve", "rf_growth", "rf_growth_figure", "rf_reading",
           "rf_table", "rules_reading", "run_changes", "run_prose", "sample_grid", "save_checkpoint",
           "seed_everything", "seed_range", "separable_costs", "show_jpeg", "show_png", "size_steps",
           "time_reading", "time_rows", "train_network", "training_curves", "training_seconds",
           "transposed_size_table", "upsampler_reading", "upsampler_table", "worked_example_text"]

STORY = ("tutorial", "s7net", "fast", "full")  # the given network, the answer, and S7AirNet fast and full


def plan(studied: str, load: bool) -> dict:
    """{preset: "trained" or "loaded"} for every preset the notebook shows: the full preset's committed model is
    loaded unless it is the one studied and LOAD_WEIGHTS is False (a long training on a CPU)."""
    if studied not in PRESETS or studied == "tutorial":
        raise ValueError(f"PRESET {studied!r}: choose s7net (S7Net), fast or full (S7AirNet)")
    return {p: "loaded" if load or (p == "full" and studied != "full") else "trained" for p in STORY}


def label_smoothing_text(epsilon: float, classes: int = 10) -> str:
    """What label smoothing epsilon does to the targets, with the numbers of this epsilon."""
    return (f"label smoothing {epsilon:g} (the target is {1 - epsilon + epsilon / classes:g} for the true class and "
            f"{epsilon / classes:g} for each other one instead of 1 and 0: no push towards ever larger logits)")


def training_prose(preset: str, n_images: int = 50_000, quick: bool = False, brief: bool = False) -> str:
    """Markdown describing how the preset trains and evaluates, read from the recipe it runs with (quick mode's
    when `quick`): every sentence holds for it, and each term is defined where it first appears (`brief`: the
    Nesterov momentum and label smoothing were defined in an earlier paragraph, and are not again)."""
    run = resolve(preset, quick=quick)
    r = run.recipe
    lookahead = "" if brief else " (each gradient taken where the momentum is about to carry the weights)"
    sgd = (f"SGD with Nesterov momentum {r.momentum:g}{lookahead}" if r.nesterov else
           f"SGD with momentum {r.momentum:g}")
    if r.muon_lr is not None:
        optimiser = (f"**Muon** trains the convolution filters that mix channels, at a peak learning rate of "
                     f"{r.muon_lr:g}: each step follows the gradient's momentum with all its directions evened out "
                     f"(orthogonalised by a few Newton-Schulz iterations), so rare directions learn as fast as common "
                     f"ones. {sgd} trains the other weights")
    else:
        optimiser = f"{sgd} trains every weight"
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
    smoothing = "" if not r.label_smoothing else f", with label smoothing {r.label_smoothing:g}" if brief else \
        f", with {label_smoothing_text(r.label_smoothing)}"
    tta = {"none": "Predictions use the image alone.",
           "flip": "At test time each prediction averages the logits of the image and its mirror: test-time "
                   "augmentation (TTA); the plain accuracy, the network alone, is reported beside it.",
           "flip-translate": "At test time each prediction averages the image, its mirror and one-pixel shifts of "
                             "both: test-time augmentation (TTA); the plain accuracy, the network alone, is "
                             "reported beside it."}[r.tta]
    return (f"**Preset `{preset}`**: {run.architecture} for {epochs_text(r.epochs)} at batch {r.batch_size} "
            f"({training_steps(n_images, r):,} steps). {optimiser}. {schedule}. {augmentation}{smoothing}. {tta}")


def run_prose(preset: str, plans: dict, n_images: int, quick: bool, brief: bool = False) -> str:
    """training_prose of the run behind the preset's model in this notebook: the training here (on its n_images,
    in quick mode when `quick`), or the committed model's own (the full training set, the preset's recipe)."""
    return training_prose(preset, n_images, quick, brief) if plans[preset] == "trained" else \
        training_prose(preset, brief=brief)


RECIPE_WORDS = {"epochs": "epochs", "batch_size": "batch", "lr": "peak learning rate",
                "muon_lr": "Muon's peak learning rate", "warmup": "warm-up share of the steps"}


def run_changes(preset: str, base: str, plans: dict, n_images: int, quick: bool) -> str:
    """The run behind the preset's model said as what its recipe changes from the run of `base`, whose paragraph
    came just before: two near-identical paragraphs would hide the few settings that differ."""
    def recipe(name):
        return resolve(name, quick=quick and plans[name] == "trained").recipe

    def said(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    mine, theirs = recipe(preset), recipe(base)
    changed = [f"{RECIPE_WORDS.get(key, key.replace('_', ' '))} {said(value)} (not {said(getattr(theirs, key))})"
               for key, value in vars(mine).items() if value != getattr(theirs, key)]
    steps = training_steps(n_images if plans[preset] == "trained" else 50_000, mine)
    return (f"**Preset `{preset}`**: {resolve(preset).architecture}, trained as `{base}` above"
            + (f" except for {', '.join(changed)}" if changed else "") + f": {steps:,} steps.")


@dataclass
class Obtained:
    """A preset's network, trained here or loaded from weights/, with the recipe that trained it (its precision
    decided) and the history of that run."""
    preset: str
    model: nn.Module
    history: list
    source: str  # "trained here", or "loaded weights/<file>"
    recipe: Recipe
    _logits: dict = field(default_factory=dict, repr=False)  # {(images' id, tta): logits}, each computed once

    @property
    def trained_here(self) -> bool:
        return self.source == "trained here"

    def logits(self, images, tta: str = "none"):
        """The model's logits on `images` with the test-time augmentation `tta` (evaluation.predict), kept so that
        a table and a figure of the same test set do not evaluate twice."""
        key = (id(images), tta)
        if key not in self._logits:
            self._logits[key] = predict(self.model, images, tta)
        return self._logits[key]

    def accuracy(self, data, tta: str = "none") -> float:
        """Test accuracy in percent: plain (tta "none") or with a test-time augmentation."""
        return accuracy(self.logits(data.test_images, tta), data.test_labels)


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


def load(preset: str, seed: int, device) -> Obtained:
    """The preset's committed model of this seed, or of its lowest committed seed when this one is not in weights/
    (the full preset's model is shown whatever seed the notebook trains)."""
    seeds = committed_seeds(preset)
    path = weights_path(preset, seed if seed in seeds or not seeds else seeds[0])
    checkpoint = load_checkpoint(path)
    recipe = recipe_from_dict(checkpoint["recipe"]) if "recipe" in checkpoint else PRESETS[preset].recipe
    return Obtained(preset, rebuild_model(checkpoint, path).to(device), checkpoint.get("history", []),
                    f"loaded weights/{path.name}", recipe)


def obtain(preset: str, seed: int, loaded: bool, data, device, quick: bool = False) -> Obtained:
    """The preset's committed model for this seed (loaded), or the network trained here from that seed."""
    if loaded:
        return load(preset, seed, device)
    run = resolve(preset, quick=quick)
    recipe, generator, model, _ = start_run(run.recipe, device, seed,
                                            lambda: build_model(run.architecture, **run.model_kwargs))
    return Obtained(preset, model, train(model, data, recipe, generator, device), "trained here", recipe)


def training_seconds(item: Obtained) -> float:
    """The training time of the run that made the model (this notebook's, or a loaded model's own)."""
    return sum(h["seconds"] for h in item.history)


def comparison_table(obtained, data) -> list[dict]:
    """One row per network: parameters, receptive field, epochs, plain and TTA accuracy on data's test images
    (measured here), and the training time on this machine where it trained here."""
    rows = []
    for item in obtained:
        tta = item.recipe.tta
        rows.append({
            "network": type(item.model).__name__, "preset": item.preset, "params": count_parameters(item.model),
            "RF px": final_rf(rf_table(item.model)), "epochs": f"{item.recipe.epochs:g}",
            "plain acc": f"{item.accuracy(data):.2f}%",
            "TTA acc": NO_TTA if tta == "none" else f"{item.accuracy(data, tta):.2f}% ({tta})",
            "training time here": f"{duration_text(training_seconds(item))}, {item.recipe.precision}"
                                  if item.trained_here else "not trained here"})
    return rows


def how_it_ran(obtained) -> list[dict]:
    """One row per network: where its model came from, how long and in what arithmetic its run trained (this
    notebook's, or the committed model's own)."""
    return [{"preset": item.preset, "model": item.source, "epochs": epochs_text(item.recipe.epochs),
             "batch": item.recipe.batch_size, "precision": item.recipe.precision,
             "training time (that run)": duration_text(training_seconds(item)) if item.history else "-"}
            for item in obtained]


def jpeg_bytes(fig, quality: int = 80) -> bytes:
    """The figure as the notebook stores it when it is made of photographs or dense heatmaps: a JPEG, a few times
    smaller than its PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", bbox_inches="tight", pil_kwargs={"quality": quality})
    return buffer.getvalue()


def png_bytes(fig, colours: int = 64) -> bytes:
    """The figure as the notebook stores flat colours, lines and text (a heatmap of counts, a curve): a PNG of a
    few colours, several times smaller than matplotlib's and sharper than a JPEG; the notebook's dpi."""
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=matplotlib.rcParams["figure.dpi"])
    quantized, small = Image.open(buffer).convert("RGB").quantize(colours), io.BytesIO()
    quantized.save(small, format="png", optimize=True)
    return small.getvalue()


def show_png(fig) -> None:
    """Display a figure as png_bytes: the notebook stays small."""
    from IPython.display import Image, display
    display(Image(png_bytes(fig), format="png"))


def show_jpeg(fig) -> None:
    """Display a figure as jpeg_bytes: the notebook stays small."""
    from IPython.display import Image, display  # only in a notebook: the rest of helpers runs without IPython
    display(Image(jpeg_bytes(fig), format="jpeg"))
