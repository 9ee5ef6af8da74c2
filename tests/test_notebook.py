"""The committed notebook as a document: no run-dependent figure typed in its prose, clean and small saved
outputs, and LOAD_WEIGHTS working for each preset (run top to bottom in quick mode)."""
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from helpers.checkpoints import weights_path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "S7_Assignment.ipynb"

# What a run, a seed or a machine changes, and so must come from a code cell's output, never from typing.
RUN_DEPENDENT = {
    "a decimal percentage": r"\d+\.\d+\s*%",
    "a count with thousands separators (parameters, images), other than the rule's 1,000,000":
        r"(?<![\d,])(?!1,000,000\b)\d{1,3}(?:,\d{3})+\b",
    "a receptive field in pixels": r"\bRF\s+\d+|receptive field of \d+",
    "a duration": r"\b\d+(?:\.\d+)?\s*(?:s|sec|seconds?|min|minutes?|hours?)\b",
    "a speed-up": r"\b\d+(?:\.\d+)?\s*x\s+(?:faster|slower)",
}


def markdown_cells():
    return [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "markdown"]


@pytest.mark.parametrize("what", RUN_DEPENDENT)
def test_no_markdown_cell_types_a_run_dependent_figure(what):
    found = [match.group(0) for text in markdown_cells() for match in re.finditer(RUN_DEPENDENT[what], text)]
    assert not found, f"typed in markdown: {what}: {found}"


def test_the_checks_catch_what_the_old_notebook_typed():
    typed = ("S7Net (671,722 parameters, RF 74)", "80% in about 2 minutes", "about 3x faster on a CPU",
             "In this run (93.39% with TTA)")
    for text in typed:
        assert any(re.search(pattern, text) for pattern in RUN_DEPENDENT.values()), text


def test_saved_outputs_are_clean_and_the_file_is_small():
    assert NOTEBOOK.stat().st_size < 1_000_000
    streams = ["".join(output.get("text", "")) for cell in json.loads(NOTEBOOK.read_text())["cells"]
               for output in cell.get("outputs", []) if output.get("output_type") == "stream"]  # str or lines
    fragments = [text for text in streams if "\r" in text or re.search(r"\d+it/s|it/s\]|s/it\]", text)]
    assert not fragments, f"progress-bar fragments saved: {fragments[:2]}"


# Words for what a recipe does: a markdown cell typed by hand must not use them, since the preset studied may not do
# it (the training is described by helpers.notebook.training_prose, from the recipe itself).
RECIPE_FEATURES = ("Muon", "Nesterov", "label smoothing", "alternat", "warm-up", "warmup", "flip-translate",
                   "one-pixel shift", "bfloat16", "bf16", "schedule", "momentum")


def test_no_typed_markdown_describes_a_recipe_feature():
    found = [(word, text.splitlines()[0]) for text in markdown_cells() for word in RECIPE_FEATURES
             if word.lower() in text.lower()]
    assert not found, f"typed in markdown, but true for some presets only: {found}"


def test_the_recipe_check_catches_what_the_old_notebook_typed():
    old = ("Nesterov SGD with airbench's momentum trains the rest",
           "horizontal flips that alternate from epoch to epoch",
           "At test time each prediction averages the image, its mirror and one-pixel shifts of both (TTA)")
    for text in old:
        assert any(word.lower() in text.lower() for word in RECIPE_FEATURES), text


def executed(preset: str, load: bool, monkeypatch, root):
    """The notebook run top to bottom in quick mode with these settings; its outputs as one text."""
    monkeypatch.setenv("S7_QUICK", "1")
    monkeypatch.setenv("CIFAR10_ROOT", str(root))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith("PRESET = "))
    settings.source = re.sub(r'^PRESET = "\w+"', f'PRESET = "{preset}"', settings.source, flags=re.M)
    settings.source = re.sub(r"^LOAD_WEIGHTS = \w+", f"LOAD_WEIGHTS = {load}", settings.source, flags=re.M)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return "".join(output.get("text", "") + "".join(output.get("data", {}).get("text/markdown", ""))
                   for cell in nb.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("preset", ["fast", "full", "s7net"])
def test_load_weights_trains_nothing_and_runs_top_to_bottom_for_each_preset(preset, real_data_root, monkeypatch):
    networks = dict.fromkeys(["tutorial", "s7net", preset])
    missing = [weights_path(p, 0).name for p in networks if not weights_path(p, 0).exists()]
    if missing:
        pytest.skip(f"weights/ lacks {', '.join(missing)}")
    text = executed(preset, True, monkeypatch, real_data_root)
    assert not re.search(r"^epoch +1 ", text, flags=re.M), "a network trained although LOAD_WEIGHTS is True"
    assert "precision auto" not in text  # nor was any precision measured
    for name in networks:
        assert f"loaded weights/{weights_path(name, 0).name}" in text
    assert "8/8 passed" in text  # the committed model meets every rule, accuracy included
    assert f"**Preset `{preset}`**" in text  # its training described from its own recipe


def test_load_weights_names_the_committed_seeds_when_one_is_missing(real_data_root, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # the committed outputs go, so that any left after the run are this run's
        if cell.cell_type == "code":
            cell.outputs = []
    settings = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith("PRESET = "))
    settings.source = settings.source.replace("LOAD_WEIGHTS = False", "LOAD_WEIGHTS = True").replace(
        "SEED = 0", "SEED = 12345")
    monkeypatch.setenv("S7_QUICK", "1")
    monkeypatch.setenv("CIFAR10_ROOT", str(real_data_root))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    message = str(error.value)
    assert "weights/ holds no tutorialnet-tutorial-seed12345.pt" in message and "Set SEED to a committed one" in message
    # It stopped in the settings cell, before anything trained.
    assert not any(cell.get("outputs") for cell in nb.cells[nb.cells.index(settings) + 1:])
