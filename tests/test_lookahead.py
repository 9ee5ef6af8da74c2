"""Lookahead: the weights are pulled to their moving average on schedule, end on it, and a run resumes exactly."""
from dataclasses import replace

import pytest
import torch
from torch import nn

from helpers.checkpoints import CheckpointError, load_resumable, save_checkpoint
from helpers.lookahead import EVERY, FINAL_DECAY, Lookahead
from helpers.models import S7Net
from helpers.recipes import Recipe
from helpers.train import seed_everything, train

RECIPE = Recipe(epochs=3, batch_size=64, precision="fp32", lookahead=True)  # 4 steps an epoch on 256 images


def test_the_weights_are_pulled_to_the_average_every_few_steps_and_end_on_it():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    lookahead = Lookahead(model)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    lookahead.step(EVERY - 1, 100)  # not a pull step: nothing moves
    assert torch.equal(model[0].weight, start + 1)
    lookahead.step(EVERY, 100)
    decay = FINAL_DECAY * (EVERY / 100) ** 3
    assert torch.allclose(model[0].weight, start + (1 - decay))  # the average moved towards the weights...
    assert torch.equal(lookahead.average[0], model[0].weight)   # ...and the weights were put on it
    with torch.no_grad():
        model[0].weight.add_(5.0)
    lookahead.step(100, 100)  # the last step: back onto the average, which stays as it was
    assert torch.allclose(model[0].weight, start + (1 - decay))
    assert len(lookahead.average) == len(model.state_dict()) - 1  # all but BatchNorm's integer batch counter


@pytest.fixture(scope="module")
def small(real_data):
    return real_data.subset(256, 100)


def run(data, recipe=RECIPE, **options):
    generator = seed_everything(0)
    model = S7Net((8, 16, 32, 48))
    train(model, data, recipe, generator, torch.device("cpu"), progress=False, evaluate_each_epoch=False, **options)
    return model


def test_a_run_with_lookahead_resumes_to_exactly_the_weights_of_an_uninterrupted_one(small, tmp_path):
    whole = run(small)
    run(small, checkpoint_path=tmp_path / "last.pt", stop_after_epoch=1)
    saved = load_resumable(tmp_path / "last.pt")
    assert len(saved["lookahead"]) == sum(t.is_floating_point() for t in whole.state_dict().values())
    resumed = run(small, resume_from=saved)
    plain = run(small, replace(RECIPE, lookahead=False))
    for name, weight in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], weight), name
    assert not torch.equal(plain.c1[0][0].weight, whole.c1[0][0].weight)  # the averaging changed the outcome


def test_a_lookahead_checkpoint_without_its_average_is_refused(small, tmp_path):
    run(small, checkpoint_path=tmp_path / "last.pt", stop_after_epoch=1)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    del saved["lookahead"]
    model = S7Net((8, 16, 32, 48))
    save_checkpoint(model, tmp_path / "broken.pt", **{k: v for k, v in saved.items()
                                                      if k not in ("architecture", "model_kwargs", "state_dict")})
    with pytest.raises(CheckpointError, match="trained with lookahead but holds no weight average"):
        load_resumable(tmp_path / "broken.pt")
