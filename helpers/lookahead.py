"""Lookahead weight averaging, as airbench trains (Keller Jordan): every few steps the weights are pulled back to
an exponential moving average of themselves, and the last step leaves the model on that average.

Why: at the end of a short schedule the weights still jitter from batch to batch; their average sits nearer the
middle of the valley they wander in, and tests better. The decay rises with the cube of the progress, so early
training moves freely and only the end is averaged strongly. BatchNorm's running statistics are averaged too, so
they stay those of the averaged weights.
"""
import torch

EVERY = 5                # steps between two pulls back to the average
FINAL_DECAY = 0.95 ** 5  # the decay per pull at the end of training (0.95 per step)


class Lookahead:
    """The moving average of a model's floating-point state (weights and BatchNorm statistics)."""

    def __init__(self, model, state: list = None):
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        if state is None:
            self.average = [t.detach().clone() for t in self.tensors]
        else:  # resumed: the average a checkpoint saved, put where the model lives
            if len(state) != len(self.tensors):
                raise ValueError(f"the saved lookahead average holds {len(state)} tensors, the model "
                                 f"{len(self.tensors)}")
            self.average = [t.detach().clone().copy_(s) for s, t in zip(state, self.tensors)]

    @torch.no_grad()
    def step(self, step: int, total_steps: int) -> None:
        """After training step `step` (1-based) of `total_steps`: every EVERY steps, and at the last step, move the
        average towards the weights and put the weights on it. At the last step the average is kept as it is."""
        if step == total_steps:
            decay = 1.0
        elif step % EVERY == 0:
            decay = FINAL_DECAY * (step / total_steps) ** 3
        else:
            return
        for average, tensor in zip(self.average, self.tensors):
            average.lerp_(tensor, 1 - decay)
            tensor.copy_(average)

    def state(self) -> list:
        """The average, for a checkpoint (save_checkpoint moves it to the CPU)."""
        return self.average
