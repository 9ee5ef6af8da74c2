"""Recipe.skip_easiest: later epochs leave out the images the network found easiest, and the schedule follows."""
from dataclasses import replace

import pytest
import torch

import helpers.train
from helpers.checkpoints import load_resumable
from helpers.data import to_float, train_batches
from helpers.difficulty import ImageDifficulty, images_kept
from helpers.recipes import PRESETS, Recipe
from helpers.train import learning_rate, steps_per_epochs
from tests.conftest import train_tiny_airnet

CPU = torch.device("cpu")


def logits_with_losses_in_order(order, confidence=10.0):
    """Logits for label 0 whose cross-entropy losses rank as `order` says (0 the lowest loss)."""
    return torch.stack([torch.tensor([confidence - rank, 0.0]) for rank in order])


def test_images_rank_within_their_batch_and_the_easiest_are_left_out_once():
    difficulty = ImageDifficulty(8, CPU)
    labels = torch.zeros(4, dtype=torch.long)
    # Two batches: the losses of the second are all higher, but each image ranks only against its own batch.
    difficulty.record(torch.tensor([5, 1, 6, 2]), logits_with_losses_in_order([3, 0, 2, 1]), labels)
    difficulty.record(torch.tensor([0, 4, 3, 7]), logits_with_losses_in_order([1, 3, 0, 2], -10.0), labels)
    assert difficulty.rank.tolist() == [1.0] * 8  # nothing taken before the epoch ends
    difficulty.end_epoch()
    assert difficulty.rank.tolist() == [0.25, 0.0, 0.25, 0.0, 0.75, 0.75, 0.5, 0.5]
    kept = difficulty.images_to_train(0.25)  # two of eight left out: the batches' easiest, images 1 and 3
    assert kept.tolist() == [0, 2, 4, 5, 6, 7]
    assert difficulty.rank[[1, 3]].tolist() == [1.0, 1.0]  # so the epoch after takes them back
    difficulty.record(kept[:4], logits_with_losses_in_order([0, 1, 2, 3]), labels)  # an epoch of kept images
    difficulty.end_epoch()
    assert difficulty.images_to_train(0.25).tolist() == [1, 3, 4, 5, 6, 7]
    assert difficulty.images_to_train(0.0).tolist() == list(range(8))


def test_train_batches_take_a_subset_shuffled_and_flip_by_the_image_number():
    images, labels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40)
    subset = torch.tensor([3, 8, 9, 20, 21, 30, 31, 39])
    batches = list(train_batches(images, labels, 4, torch.Generator().manual_seed(0), translate=0,
                                 alternate_flip_epoch=2, subset=subset))
    assert len(batches) == 2
    seen = torch.cat([index for _, _, index in batches])
    assert sorted(seen.tolist()) == subset.tolist() and seen.tolist() != subset.tolist()  # all of it, shuffled
    for x, y, index in batches:
        assert torch.equal(y, labels[index])
        for image, i in zip(x, index.tolist()):
            original = to_float(images[i])
            assert torch.equal(image, original.flip(-1) if (i + 2) % 2 else original)


def test_later_epochs_are_shorter_and_the_schedule_still_ends_at_zero():
    recipe = Recipe(epochs=3, batch_size=10, skip_easiest=0.25)
    assert images_kept(100, 0.25) == 75 and images_kept(100, 0.0) == 100
    assert steps_per_epochs(100, recipe) == [10, 7, 7]  # 75 images: 7 whole batches
    assert steps_per_epochs(100, replace(recipe, skip_easiest=0.0)) == [10, 10, 10]
    total = 10 + 7 + 7
    assert learning_rate(total - 1, total, recipe) == pytest.approx(recipe.lr / (total - round(0.25 * total)))
    with pytest.raises(ValueError, match="skip_easiest"):
        Recipe(skip_easiest=1.0)


def test_training_leaves_out_the_easiest_and_resumes_the_same(tmp_path, real_data, monkeypatch):
    data = real_data.subset(256, 10)
    recipe = replace(PRESETS["fast"].recipe, epochs=3, batch_size=32, skip_easiest=0.25, precision="fp32")
    subsets = []

    def recording_batches(*args, subset=None, **kwargs):
        subsets.append(subset)
        return train_batches(*args, subset=subset, **kwargs)

    monkeypatch.setattr(helpers.train, "train_batches", recording_batches)

    def run(**options):
        return train_tiny_airnet(data, recipe, tmp_path / "last.pt", **options)

    whole, history = run()
    assert subsets[0] is None and [len(s) for s in subsets[1:]] == [192, 192]
    left_out = [set(range(256)) - set(s.tolist()) for s in subsets[1:]]
    assert not left_out[0] & left_out[1]  # an image left out of epoch 2 trains again in epoch 3
    assert history[-1]["lr"] == learning_rate(8 + 6 + 6 - 1, 20, recipe)  # the schedule spans the shorter epochs
    subsets.clear()
    run(stop_after_epoch=1)
    resumed, _ = run(resume_from=load_resumable(tmp_path / "last.pt"))
    assert [len(s) for s in subsets[1:]] == [192, 192]
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))
