"""The committed weights: one model per preset, each carrying where it came from, reproducing the accuracy it
reports when evaluated again here, and each S7 network meeting every rule on its plain accuracy."""
import pytest
import torch

from helpers.checker.spec import check_s7
from helpers.checkpoints import load_checkpoint, rebuild_model, reported_tta, weights_path
from helpers.evaluation import evaluate
from helpers.recipes import PRESETS, epoch_count, recipe_from_dict

# The rules the tutorial's network breaks, as given: the checks say so on the committed model.
TUTORIAL_BREAKS = {"architecture C1 C2 C3 C4 O", "receptive field", "depthwise-separable conv", "dilated conv",
                   "global average pooling", "test accuracy"}
pytestmark = pytest.mark.slow  # every committed model evaluated on the full test set: about 100 s


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_committed_weights_carry_their_provenance_and_reproduce_their_accuracy(preset, real_data):
    checkpoint = load_checkpoint(weights_path(preset, 0))
    assert (checkpoint["preset"], checkpoint["seed"], checkpoint["architecture"]) == \
        (preset, 0, PRESETS[preset].architecture)
    recipe = recipe_from_dict(checkpoint["recipe"])
    assert len(checkpoint["history"]) == epoch_count(recipe)  # the training run's, epoch by epoch
    assert recipe.epochs == PRESETS[preset].recipe.epochs  # what the preset trains now
    model = rebuild_model(checkpoint).eval()
    tta = evaluate(model, real_data.test_images, real_data.test_labels, tta=reported_tta(checkpoint))
    assert round(tta, 2) == checkpoint["test_acc"]  # what it says it reaches, measured again
    plain = evaluate(model, real_data.test_images, real_data.test_labels)
    failed = {check.name for check in check_s7(model, plain, device=torch.device("cpu")) if check.failed}
    assert failed == (TUTORIAL_BREAKS if preset == "tutorial" else set())
