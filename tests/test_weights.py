"""The committed weights are the model the notebook trained, and they reproduce its reported accuracy."""
from pathlib import Path

import torch

from helpers.spec import check_s7
from helpers.checkpoints import load_model
from helpers.evaluation import evaluate

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "s7airnet-full-seed0.pt"


def test_committed_weights_reproduce_the_notebooks_accuracy(real_data):
    model = load_model(WEIGHTS)
    tta = evaluate(model, real_data.test_images, real_data.test_labels, tta=True)
    plain = evaluate(model, real_data.test_images, real_data.test_labels)
    assert (round(tta, 2), round(plain, 2)) == (93.39, 92.39)  # the notebook's preset-full run, seed 0
    assert all(check.passed for check in check_s7(model, tta, device=torch.device("cpu")))
