"""The notebook as a document, and the helpers that make its prose true.

- No markdown cell types a figure about an output: every accuracy, receptive field, count, time or percentage in
  prose is printed by a code cell (display(Markdown(...)) from helpers.lecture.readings and helpers.notebook).
- Its saved outputs, and those of a quick run: small, no line over 120 characters, every accuracy labelled plain
  or TTA, no progress-bar fragments.
- LOAD_WEIGHTS works for each preset, and a missing seed stops the settings cell with one clear sentence.
"""
import re
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from helpers.checkpoints import weights_path
from helpers.data import CIFAR10
from helpers.models import S7Net, TutorialNet
from helpers.notebook import (STORY, Obtained, comparison_table, how_it_ran, load, plan, run_changes, run_prose,
                              training_prose)
from helpers.recipes import PRESETS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "S7_Assignment.ipynb"
MAX_BYTES, MAX_LINE = 800_000, 120

# A figure a run, a seed, a machine or a setting changes: typed in prose, it would go stale or lie.
TYPED_FIGURES = {
    "a percentage": r"(?<![\w.])\d+(?:\.\d+)?\s*(?:%|percent)",
    "a decimal number": r"(?<![\w.])\d+\.\d+\b",
    "a count with thousands separators": r"(?<![\d,])\d{1,3}(?:,\d{3})+\b",
    "a receptive field": r"\bRF\s*(?:of\s*)?\d+|receptive field (?:of|is|=)\s*\d+|\b\d+\s*(?:px|pixels?)\b",
    "a duration": r"\b\d+(?:\.\d+)?\s*(?:s|sec|seconds?|min|minutes?|hours?)\b",
    "a ratio": r"\b\d+(?:\.\d+)?\s*(?:x|×|times)\s+(?:faster|slower|fewer|more|cheaper|smaller|larger)",
    "a number of epochs, steps or parameters":
        r"(?<![\d,.])\d+(?:\.\d+)?\s*(?:epochs?|steps|param(?:eter)?s|weights|MACs)\b",
}
# The assignment's own thresholds and the ERF's chosen fractions: definitions, not outputs.
DEFINITIONS = ("80%", "44 pixels", "44 px", "1,000,000", "50%", "95%")


def typed_figures(text: str) -> list[str]:
    """The run-dependent figures typed in a markdown text; links, arXiv numbers and DEFINITIONS do not count."""
    text = re.sub(r"\]\([^)]*\)|https?://\S+|arXiv:\d+\.\d+", " ", text)
    return [match.group(0) for pattern in TYPED_FIGURES.values() for match in re.finditer(pattern, text)
            if match.group(0).strip() not in DEFINITIONS]


def markdown_cells(nb=None) -> list[str]:
    nb = nb or nbformat.read(NOTEBOOK, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


@pytest.mark.parametrize("typed", [
    "S7Net (671,722 parameters, RF 74)", "In this run (93.39% with TTA)", "the full preset reaches 93%",
    "80% in about 2 minutes", "about 3x faster on a CPU", "a receptive field of 74", "it trains for 5 epochs",
    "the map goes from 32 to 31 pixels", "a ratio of 0.1267", "the plain mean is 82 percent"])
def test_the_detector_catches_a_typed_figure(typed):
    assert typed_figures(typed), typed


@pytest.mark.parametrize("defined", [
    "at least **80%** test accuracy", "a receptive field above 44 pixels", "fewer than 1,000,000 parameters",
    "squares that hold half and 95% of the gradient", "a 3x3 kernel with dilation 2 over a 5x5 window",
    "(Jordan 2024, arXiv:2404.00498)", "[airbench](https://github.com/KellerJordan/cifar10-airbench/v1.2)",
    "C1 C2 C3 C4 O with exactly 3 max-pools"])
def test_the_detector_lets_a_definition_through(defined):
    assert typed_figures(defined) == []


def test_no_markdown_cell_types_a_figure_about_an_output():
    found = [(text.splitlines()[0], figures) for text in markdown_cells() if (figures := typed_figures(text))]
    assert not found, f"typed in markdown, to be printed by a code cell instead: {found}"


# Words for what one recipe does and another does not: the training is described from the recipe itself
# (helpers.notebook.training_prose), never typed.
RECIPE_FEATURES = ("Muon", "Nesterov", "label smoothing", "alternat", "warm-up", "warmup", "flip-translate",
                   "one-pixel shift", "schedule", "momentum")


def test_no_markdown_cell_types_a_recipe_feature():
    found = [(word, text.splitlines()[0]) for text in markdown_cells() for word in RECIPE_FEATURES
             if word.lower() in text.lower()]
    assert not found, f"typed in markdown, but true for some presets only: {found}"


def text_outputs(nb) -> list[str]:
    """Every text a code cell printed (streams and plain-text results), as the reader sees it."""
    return ["".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
            if "image/png" not in output.get("data", {}) and "image/jpeg" not in output.get("data", {})]


def unlabelled_accuracies(texts) -> list[str]:
    """Lines that print a decimal percentage with neither "plain" nor "TTA" on them, nor in the header of the
    table they belong to (a header line is the one above a line of dashes); a training accuracy ("train 62.00%",
    on augmented batches) is neither and needs no label."""
    found = []
    for text in texts:
        lines, header = text.splitlines(), ""
        for i, line in enumerate(lines):
            if i + 1 < len(lines) and re.fullmatch(r"[-\s]+", lines[i + 1]) and "-" in lines[i + 1]:
                header = line
            elif not line.strip():
                header = ""
            labelled = re.search(r"plain|TTA", line + header)
            if re.search(r"(?<!train )\b\d+\.\d+%", line) and not labelled:  # a training accuracy says "train"
                found.append(line)
    return found


def test_the_label_check_needs_plain_or_tta_on_the_line_or_in_its_table_header():
    table = "network  plain acc  TTA acc\n-------  ---------  -------\nS7Net    82.00%     83.00%\n\nlater 1.00%"
    assert unlabelled_accuracies([table]) == ["later 1.00%"]
    assert unlabelled_accuracies(["test accuracy 82.00% plain", "82.00% with TTA (flip)", "train 62.00%"]) == []
    assert unlabelled_accuracies(["epoch 1  train 62.00%  test 78.00%"]) == ["epoch 1  train 62.00%  test 78.00%"]


def document_problems(nb, size: int) -> list[str]:
    """What a reader would trip over in an executed notebook: its size, long lines, unlabelled accuracies,
    progress-bar fragments, errors."""
    texts = text_outputs(nb)
    long = [line for text in texts for line in text.splitlines() if len(line) > MAX_LINE]
    fragments = [text for text in texts if "\r" in text or re.search(r"\d+it/s|it/s\]|s/it\]", text)]
    errors = [output["ename"] for cell in nb.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    return ([f"{size:,} bytes"] if size > MAX_BYTES else []) + [f"long line: {line}" for line in long] + \
        [f"unlabelled: {line}" for line in unlabelled_accuracies(texts)] + fragments[:2] + errors


def test_the_committed_notebook_as_saved_is_small_and_clean():
    """Outputs cleared while the branches are merged; once executed in full, this checks the saved outputs."""
    assert document_problems(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.stat().st_size) == []


# ---- the helpers behind the prose ----

def test_the_plan_loads_the_full_preset_unless_it_is_studied_and_trained():
    assert plan("s7net", False) == {"tutorial": "trained", "s7net": "trained", "fast": "trained", "full": "loaded"}
    assert plan("full", False)["full"] == "trained" and set(plan("fast", True).values()) == {"loaded"}
    assert list(plan("s7net", False)) == list(STORY)
    with pytest.raises(ValueError, match="PRESET 'tutorial'"):
        plan("tutorial", False)


def test_training_prose_defines_each_term_it_uses_and_only_those():
    s7net, tutorial = training_prose("s7net"), training_prose("tutorial")
    assert "Nesterov momentum 0.9 (each gradient taken where" in s7net
    assert "label smoothing 0.2 (the target is 0.82 for the true class and 0.02 for each other one" in s7net
    assert "test-time augmentation (TTA)" in s7net and "5 epochs at batch 512 (485 steps)" in s7net
    assert not re.search("Nesterov|smoothing|TTA|Muon", tutorial) and "25,000 steps" in tutorial
    assert "**Muon** trains the convolution filters" in training_prose("fast") and "Muon" not in s7net


def test_a_brief_paragraph_leaves_out_the_definitions_an_earlier_one_gave():
    full, brief = training_prose("fast"), training_prose("fast", brief=True)
    assert "label smoothing 0.2 (the target" in full and "Nesterov momentum 0.85 (each gradient" in full
    assert "with label smoothing 0.2." in brief and "(the target" not in brief and "(each gradient" not in brief


def test_a_run_like_the_one_before_says_only_what_changes():
    plans = plan("s7net", False)
    assert run_changes("full", "fast", plans, 50_000, quick=False) == (
        "**Preset `full`**: S7AirNet, trained as `fast` above except for epochs 12 (not 1.2), batch 250 (not 128), "
        "peak learning rate 0.3175 (not 0.16), Muon's peak learning rate 0.06 (not 0.12): 2,400 steps.")
    assert run_changes("fast", "fast", plans, 2048, quick=True) == \
        "**Preset `fast`**: S7AirNet, trained as `fast` above: 16 steps."  # quick: one epoch at batch 128


def test_the_prose_of_a_run_is_the_one_that_made_its_model():
    plans = plan("s7net", False)
    assert "S7Net for 1 epoch at batch 256 (8 steps)" in run_prose("s7net", plans, 2048, quick=True)
    assert run_prose("full", plans, 2048, quick=True) == training_prose("full")  # the committed model's own run


def tiny_data(n: int = 40) -> CIFAR10:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return CIFAR10(images, torch.arange(n) % 10, images, torch.arange(n) % 10)


def test_the_side_by_side_table_labels_each_accuracy_and_times_only_what_trained_here():
    data = tiny_data()
    history = [{"epoch": 1, "seconds": 2.5}, {"epoch": 2, "seconds": 3.0}]
    here = Obtained("s7net", S7Net(), history, "trained here", PRESETS["s7net"].recipe)
    loaded = Obtained("tutorial", TutorialNet(), history, "loaded weights/x.pt", PRESETS["tutorial"].recipe)
    s7net_row, tutorial_row = comparison_table([here, loaded], data)
    assert s7net_row["RF px"] == 74 and s7net_row["params"] == 671_722 and s7net_row["epochs"] == "5"
    assert s7net_row["plain acc"] == f"{here.accuracy(data):.2f}%"
    assert s7net_row["TTA acc"] == f"{here.accuracy(data, 'flip'):.2f}% (flip)"
    assert s7net_row["training time here"] == "5.5 s, auto" and tutorial_row["training time here"] == "not trained here"
    assert tutorial_row["TTA acc"] == "- (no TTA)"
    assert [row["model"] for row in how_it_ran([here, loaded])] == ["trained here", "loaded weights/x.pt"]


def test_logits_are_computed_once_per_test_set_and_augmentation():
    data, item = tiny_data(), Obtained("s7net", S7Net(), [], "trained here", PRESETS["s7net"].recipe)
    assert item.logits(data.test_images) is item.logits(data.test_images)
    assert item.logits(data.test_images, "flip") is not item.logits(data.test_images)


def test_a_committed_model_of_another_seed_falls_back_to_the_lowest_committed_one():
    item = load("full", 12345, torch.device("cpu"))
    assert item.source == "loaded weights/s7airnet-full-seed0.pt" and item.recipe.epochs == 12
    assert item.recipe.precision != "auto" and not item.trained_here and len(item.history) == 12


# ---- the notebook run top to bottom in quick mode (slow) ----

def executed(preset: str, load_weights: bool, monkeypatch, root, seed: int = 0):
    """The notebook run top to bottom in quick mode with these settings."""
    monkeypatch.setenv("S7_QUICK", "1")
    monkeypatch.setenv("CIFAR10_ROOT", str(root))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # the committed outputs go, so that every output seen comes from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    settings = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith("PRESET = "))
    settings.source = re.sub(r'^PRESET = "\w+"', f'PRESET = "{preset}"', settings.source, flags=re.M)
    settings.source = re.sub(r"^LOAD_WEIGHTS = \w+", f"LOAD_WEIGHTS = {load_weights}", settings.source, flags=re.M)
    settings.source = re.sub(r"^SEED = \d+", f"SEED = {seed}", settings.source, flags=re.M)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    return nb, client


def all_text(nb) -> str:
    return "".join(output.get("text", "") + "".join(output.get("data", {}).get("text/markdown", ""))
                   for cell in nb.cells for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def quick_run(real_data_root):
    """The notebook as committed, executed once in quick mode."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        nb, client = executed("s7net", False, monkeypatch, real_data_root)
        client.execute()
    return nb


@pytest.mark.slow
def test_a_quick_run_is_small_clean_and_labels_every_accuracy(quick_run):
    size = len(nbformat.writes(quick_run).encode())
    assert document_problems(quick_run, size) == []


@pytest.mark.slow
def test_a_quick_run_studies_s7net_and_evaluates_the_committed_full_model(quick_run):
    text = all_text(quick_run)
    assert "| c3 | 8x8 -> 8x8 |" in text and "final receptive field: 74 px" in text  # S7Net's blocks and RF
    assert "S7Net:" in text and "% plain, " in text and "% with TTA (flip)" in text
    assert "loaded weights/s7airnet-full-seed0.pt" in text
    assert re.search(r"evaluated here: \d+\.\d+% plain, \d+\.\d+% with TTA \(flip-translate\)", text)
    assert "Per-class accuracy (plain)" in text and "Grad-CAM at c3: its map is 8x8" in text
    assert "At c4 the theoretical field is 74 px wide" in text


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fast", "full", "s7net"])
def test_load_weights_trains_nothing_and_runs_top_to_bottom_for_each_preset(preset, real_data_root, monkeypatch):
    missing = [weights_path(p, 0).name for p in STORY if not weights_path(p, 0).exists()]
    if missing:
        pytest.skip(f"weights/ lacks {', '.join(missing)}")
    nb, client = executed(preset, True, monkeypatch, real_data_root)
    client.execute()
    text = all_text(nb)
    assert not re.search(r"^epoch +1 ", text, flags=re.M), "a network trained although LOAD_WEIGHTS is True"
    assert "precision auto" not in text  # nor was any precision measured
    for name in STORY:
        assert f"loaded weights/{weights_path(name, 0).name}" in text
    architecture = PRESETS[preset].architecture
    assert f"{architecture} meets every rule checked here" in text  # the committed model, accuracy included
    assert f"**Preset `{preset}`**" in text  # its training described from its own recipe


@pytest.mark.slow
def test_load_weights_names_the_committed_seeds_when_one_is_missing(real_data_root, monkeypatch):
    nb, client = executed("s7net", True, monkeypatch, real_data_root, seed=12345)
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    message = str(error.value)
    assert "weights/ holds no tutorialnet-tutorial-seed12345.pt" in message and "Set SEED to a committed one" in message
    settings = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith("PRESET = "))
    assert not any(cell.get("outputs") for cell in nb.cells[nb.cells.index(settings) + 1:])  # stopped before training
