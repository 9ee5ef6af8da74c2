"""Batches draw their randomness once per epoch: no host-to-device copy per step, and the same values as before."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.data import to_float, train_batches

CONFIGS = [dict(translate=2, flip=True), dict(translate=0, flip=True), dict(translate=3, flip=False),
           dict(translate=2, flip=True, alternate_flip_epoch=3), dict(translate=2, flip=True, part=slice(8, 24)),
           dict(translate=2, flip=True, channels_last=True)]


def old_train_batches(images, labels, batch_size, generator, translate=2, flip=True, channels_last=False,
                      part=slice(None), alternate_flip_epoch=None):
    """train_batches as it was before the draws moved out of the loop (commit f2aab87): the reference."""
    def augment(images, translate, flip):
        n, _, h, w = images.shape
        if translate:
            padded = F.pad(images, (translate,) * 4, mode="reflect")
            shifts = torch.randint(0, 2 * translate + 1, (2, n), generator=generator).to(images.device)
            rows = (shifts[0, :, None] + torch.arange(h, device=images.device))[:, None, :, None]
            cols = (shifts[1, :, None] + torch.arange(w, device=images.device))[:, None, None, :]
            channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
            images = padded[torch.arange(n, device=images.device)[:, None, None, None], channels, rows, cols]
        if flip:
            flipped = (torch.rand(n, generator=generator) < 0.5).to(images.device)
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images

    alternate = flip and alternate_flip_epoch is not None
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images) - batch_size + 1, batch_size):
        index = order[start:start + batch_size]
        batch = augment(images[index], translate, flip and not alternate)
        if alternate:
            batch = torch.where(((index + alternate_flip_epoch) % 2 == 1)[:, None, None, None], batch.flip(-1), batch)
        yield to_float(batch[part], channels_last), labels[index][part]


def images_and_labels(n: int):
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator), torch.arange(n)


@pytest.mark.parametrize("config", CONFIGS)
def test_batches_are_bit_identical_to_the_batch_by_batch_draws(config):
    images, labels = images_and_labels(200)
    new, old = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(2):  # two epochs: the generator must also be left where the old loop left it
        ours, theirs = (list(batches(images, labels, 32, g, **config))
                        for batches, g in ((train_batches, new), (old_train_batches, old)))
        assert len(ours) == len(theirs) == 6
        for (x, y), (x_old, y_old) in zip(ours, theirs):
            assert torch.equal(x, x_old) and torch.equal(y, y_old)
            assert x.stride() == x_old.stride()
    assert torch.equal(new.get_state(), old.get_state())


class HostToDeviceCopies(TorchDispatchMode):
    """Counts the copies from a CPU tensor to a tensor on another device (the copies that make a host wait)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func is torch.ops.aten._to_copy.default:
            source, target = args[0], result
        elif func is torch.ops.aten.copy_.default:
            target, source = args[0], args[1]
        else:
            return result
        if source.device.type == "cpu" and target.device.type != "cpu":
            self.count += 1
        return result


def count_copies(batches, **config):
    """(host-to-device copies until the first batch, copies after it, batches) over one epoch on the meta device.

    Data on the meta device stands for a GPU: every copy to it from the CPU is seen, and nothing is computed.
    """
    images, labels = (t.to("meta") for t in images_and_labels(256))
    epoch = batches(images, labels, 32, torch.Generator().manual_seed(0), **config)
    with HostToDeviceCopies() as copies:
        x = next(epoch)[0]
        at_first_batch = copies.count
        rest = sum(1 for _ in epoch)
    assert x.device.type == "meta"
    return at_first_batch, copies.count - at_first_batch, 1 + rest


@pytest.mark.parametrize("config", CONFIGS)
def test_no_batch_copies_from_the_host_after_the_first(config):
    at_first_batch, after, n_batches = count_copies(train_batches, **config)
    assert n_batches == 8
    assert at_first_batch <= 3  # the epoch's order, shifts and flips, once
    assert after == 0  # and nothing per step


def test_the_counter_sees_the_old_per_batch_copies():
    """The old draws copied shifts and flips in every batch: the count above would have failed on them."""
    assert count_copies(old_train_batches, translate=2, flip=True) == (3, 14, 8)
