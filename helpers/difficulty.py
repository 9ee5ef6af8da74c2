"""Which training images the network already finds easy, so that later epochs can leave them out
(Recipe.skip_easiest): a short schedule then spends its steps where the network still errs."""
import torch
import torch.nn.functional as F

from .distributed import all_reduce_sum


def images_kept(n_images: int, skip: float) -> int:
    """How many of n_images an epoch trains when it leaves out the `skip` fraction: the schedule counts on it."""
    return n_images - int(n_images * skip)


class ImageDifficulty:
    """Each training image's loss rank within the batch it last trained in: 0 the easiest, just under 1 the hardest.

    Ranked within its batch rather than by the loss itself: the loss falls through an epoch, so an image trained
    early would look hard only for being early. An image not trained yet, or left out of the last epoch, ranks 1:
    it is kept next time, so no image is left out twice in a row.
    """

    def __init__(self, n_images: int, device):
        self.rank = torch.ones(n_images, device=device)
        self._fresh = torch.zeros_like(self.rank)  # this epoch's ranks, and which images have one
        self._seen = torch.zeros_like(self.rank)

    def record(self, index: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """After a training step: rank the batch's images (this process's slice of it) by their loss."""
        losses = F.cross_entropy(logits.detach().float(), labels, reduction="none")
        self._fresh[index] = losses.argsort().argsort().float() / len(losses)
        self._seen[index] = 1.0

    def end_epoch(self) -> None:
        """Take this epoch's ranks, from every process under torchrun (each ranked its own slices)."""
        seen = all_reduce_sum(self._seen) > 0
        self.rank = torch.where(seen, all_reduce_sum(self._fresh), self.rank)
        self._fresh.zero_()
        self._seen.zero_()

    def images_to_train(self, skip: float) -> torch.Tensor:
        """The positions of the images the next epoch trains, sorted: all but the `skip` fraction that rank lowest
        (ties broken by position). Those left out rank 1 from now on, so that the epoch after takes them back."""
        easiest_first = self.rank.argsort(stable=True)
        skipped = len(self.rank) - images_kept(len(self.rank), skip)
        self.rank[easiest_first[:skipped]] = 1.0
        return easiest_first[skipped:].sort().values

    def state_dict(self) -> dict:
        return {"rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        self.rank = state["rank"].to(self.rank.device)
