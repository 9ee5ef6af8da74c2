"""The typical student recipe, for comparison with the engine (`helpers.train --net`): a torchvision DataLoader with
RandomRotation, a random flip and Normalize, SGD at lr 0.01 with momentum 0.9, batch 64, a constant lr, plain
cross-entropy; the plain test accuracy after every epoch, until it reaches 80% or the time budget runs out.

    python benchmarks/student_recipe.py --net tests/own_nets.py:DropoutNet --max-seconds 1500 [--precision P]

One JSON line: the epochs and training seconds to 80% (null when the budget ran out first), every epoch's
accuracy and seconds, the precision (the engine's rule, so that both run in the same arithmetic), the processor,
and the code that ran (commit, and whether the tree had changes).
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from helpers.data import load_cifar10  # noqa: E402
from helpers.evaluation import evaluate  # noqa: E402
from helpers.models import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402
from helpers.recipes import PRECISIONS, Recipe  # noqa: E402
from helpers.runtime.device import processor_name  # noqa: E402
from helpers.runtime.precision import Precision, decide_precision  # noqa: E402
from helpers.loop import seed_everything  # noqa: E402
from helpers.user_network import UserNetwork, user_network  # noqa: E402
from benchmarks.time_to_accuracy import code_version  # noqa: E402

TARGET = 80.0


class Augmented(Dataset):
    """uint8 CIFAR-10 images through the transforms a student's notebook uses, one image at a time."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.transform = v2.Compose([v2.RandomRotation(10), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32,
                                     scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def train_like_a_student(model: UserNetwork, data, precision: Precision, max_seconds: float, workers: int) -> dict:
    """Epochs of the typical recipe on model.net (it normalises in the loader) until TARGET or max_seconds."""
    loader = DataLoader(Augmented(data.train_images, data.train_labels), batch_size=64, shuffle=True,
                        num_workers=workers, persistent_workers=workers > 0)
    optimizer = torch.optim.SGD(model.net.parameters(), lr=0.01, momentum=0.9)
    accuracies, seconds = [], []
    while sum(seconds) < max_seconds and (not accuracies or accuracies[-1] < TARGET):
        start = time.perf_counter()
        model.net.train()
        with precision.whole_run():
            for x, y in loader:
                with precision.autocast:
                    loss = F.cross_entropy(model.net(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        seconds.append(time.perf_counter() - start)
        accuracies.append(evaluate(model, data.test_images, data.test_labels))  # [0, 1] images, normalised inside
    reached = accuracies[-1] >= TARGET
    return {"epochs_to_80": len(accuracies) if reached else None,
            "seconds_to_80": round(sum(seconds), 1) if reached else None,
            "test_acc_plain": [round(a, 2) for a in accuracies], "epoch_seconds": [round(s, 1) for s in seconds]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/student_recipe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", required=True, metavar="FILE.py[:NAME]")
    parser.add_argument("--max-seconds", type=float, default=1800, help="training time budget (default 1800)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2, as on Colab)")
    parser.add_argument("--data", help="data root (default $CIFAR10_ROOT or ./data)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    version = code_version()  # before training: the tree may change while it runs
    device = torch.device("cpu")
    recipe, rule = decide_precision(Recipe(batch_size=64, precision=args.precision), device)
    seed_everything(args.seed)
    model = user_network(args.net)
    data = load_cifar10(args.data)
    result = train_like_a_student(model, data, Precision.for_run(device, recipe.precision, 64), args.max_seconds,
                                  args.workers)
    print(json.dumps({"net": args.net, "recipe": "student: SGD 0.01 momentum 0.9, batch 64, RandomRotation(10), flip",
                      "precision": recipe.precision, "precision_rule": rule, "processor": processor_name(device),
                      "seed": args.seed, "max_seconds": args.max_seconds, "torch": torch.__version__, **version,
                      **result}), flush=True)


if __name__ == "__main__":
    main()
