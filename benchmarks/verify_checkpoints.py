"""Re-evaluate saved checkpoints without helpers' data or evaluation code, and compare with what was reported.

    python benchmarks/verify_checkpoints.py runs/bench/seed*.pt --data ../shared/data --report runs/bench.jsonl

Only the network and the name of its TTA come from helpers (helpers.checkpoints); the test images are read
straight from the official binary file, or from torchvision's python file after checking its official MD5 (it is a
pickle), and the accuracy (plain, and with the checkpoint's TTA) is computed here in a few lines of torch.
"""
import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.checkpoints import rebuild_model, reported_tta  # noqa: E402

PYTHON_TEST_MD5 = "40351d587109b95175f43aff81a1287e"  # torchvision's cifar-10-batches-py/test_batch


def official_test_set(data_root: Path):
    """The 10,000 test images and labels, from whichever official layout the data root holds."""
    binary = data_root / "cifar-10-batches-bin" / "test_batch.bin"
    if binary.is_file():  # records of 1 label byte and 3,072 pixel bytes (R, G, B planes)
        raw = np.fromfile(binary, dtype=np.uint8).reshape(-1, 3073)
        return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))
    python = data_root / "cifar-10-batches-py" / "test_batch"
    if not python.is_file():
        sys.exit(f"error: neither {binary} nor {python} exists")
    raw = python.read_bytes()
    if hashlib.md5(raw).hexdigest() != PYTHON_TEST_MD5:
        sys.exit(f"error: {python} is not the official file (MD5 differs); it is a pickle, so it is not opened")
    batch = pickle.loads(raw, encoding="bytes")
    images = torch.from_numpy(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return images, torch.tensor(batch[b"labels"], dtype=torch.int64)


def weighted_views(x, tta: str):
    """(weight, view) pairs: the image and its mirror, and for flip-translate also both shifted one pixel up-left
    and down-right (reflect padding), each pair of shifted views sharing half of the weight."""
    pairs = [(x, x.flip(-1))] if tta != "none" else [(x, x)]
    if tta == "flip-translate":
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[:, :, :32, :32], padded[:, :, 2:, 2:]]
        return [(w, v) for a, b in pairs for w, v in ((1 / 4, a), (1 / 4, b))] + \
            [(1 / 8, v) for s in shifted for v in (s, s.flip(-1))]
    return [(1 / 2, v) for pair in pairs for v in pair]


@torch.no_grad()
def accuracies(checkpoint: dict, path: Path, images, labels):
    """[accuracy with the recipe's TTA, plain accuracy] of a loaded checkpoint (read from `path`), in percent,
    rounded as the benchmark reports them."""
    model, tta = rebuild_model(checkpoint, path).eval(), reported_tta(checkpoint)
    plain, augmented = [], []
    for x in (images[i:i + 1000].float() / 255 for i in range(0, len(images), 1000)):
        plain.append(model(x).argmax(1))
        augmented.append(sum(w * model(v) for w, v in weighted_views(x, tta)).argmax(1))
    return [round(100 * (torch.cat(p) == labels).float().mean().item(), 2) for p in (augmented, plain)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder holding cifar-10-batches-bin/ or cifar-10-batches-py/")
    parser.add_argument("--report", type=Path, help="the benchmark's JSON lines, to compare with")
    args = parser.parse_args()
    reported = {}
    if args.report:
        for line in args.report.read_text().splitlines():
            record = json.loads(line)
            if "checkpoint" in record:
                reported[Path(record["checkpoint"]).name] = (record["test_acc"], record["test_acc_plain"])
    images, labels = official_test_set(args.data)
    failures = 0
    for path in args.checkpoints:
        checkpoint = torch.load(path, weights_only=True)
        measured = accuracies(checkpoint, path, images, labels)
        claimed = reported.get(path.name)
        if args.report and claimed is None:
            verdict, failures = f" is not in the report {args.report}", failures + 1
        elif claimed is None:
            verdict = ""
        elif list(claimed) == measured:
            verdict = " matches the report"
        else:
            verdict, failures = f" DIFFERS from the report {claimed}", failures + 1
        print(f"{path}: test_acc {measured[0]:.2f}% (TTA: {reported_tta(checkpoint)}), "
              f"{measured[1]:.2f}% plain{verdict}")
    if failures:  # a script or CI that checks the status must see it
        sys.exit(f"{failures} of {len(args.checkpoints)} checkpoints do not match the report")


if __name__ == "__main__":
    main()
