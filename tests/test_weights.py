"""The committed weights: one model per preset, each carrying where it came from, and each reproducing the
accuracy it reports when evaluated again here."""
import pytest
import torch

from helpers.checkpoints import load_checkpoint, rebuild_model, reported_tta, weights_path
from helpers.evaluation import evaluate
from helpers.recipes import PRESETS, recipe_from_dict
from helpers.spec import check_s7


@pytest.mark.parametrize("preset", ["fast", "full"])
def test_committed_weights_carry_their_provenance_and_reproduce_their_accuracy(preset, real_data):
    checkpoint = load_checkpoint(weights_path(preset, 0))
    assert (checkpoint["preset"], checkpoint["seed"], checkpoint["architecture"]) == \
        (preset, 0, PRESETS[preset].architecture)
    history = checkpoint.get("history", [])  # the training run's, epoch by epoch
    assert not history or len(history) == recipe_from_dict(checkpoint["recipe"]).epochs
    model = rebuild_model(checkpoint).eval()
    tta = evaluate(model, real_data.test_images, real_data.test_labels, tta=reported_tta(checkpoint))
    assert round(tta, 2) == checkpoint["test_acc"]  # what it says it reaches, measured again
    assert all(check.passed for check in check_s7(model, tta, device=torch.device("cpu")))
