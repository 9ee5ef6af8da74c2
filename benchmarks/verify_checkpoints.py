"""Re-evaluate saved checkpoints without helpers' data or evaluation code, and compare with what was reported.

    python benchmarks/verify_checkpoints.py runs/bench/seed*.pt --data ../shared/data --report runs/bench.jsonl

Only the architecture comes from helpers.models (build_model); the test images are read straight from
the official binary file and the accuracy (plain and flip-TTA) is computed here in a few lines of torch.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.models import build_model  # noqa: E402


def official_test_set(data_root: Path):
    """test_batch.bin: 10,000 records of 1 label byte and 3,072 pixel bytes (R, G, B planes)."""
    raw = np.fromfile(data_root / "cifar-10-batches-bin" / "test_batch.bin", dtype=np.uint8).reshape(-1, 3073)
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


@torch.no_grad()
def accuracies(path: Path, images, labels):
    checkpoint = torch.load(path, weights_only=True)
    model = build_model(checkpoint.get("architecture", "S7Net"), **checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    plain, tta = [], []
    for x in (images[i:i + 1000].float() / 255 for i in range(0, len(images), 1000)):
        logits = model(x)
        plain.append(logits.argmax(1))
        tta.append((logits + model(x.flip(-1))).argmax(1))
    return [round(100 * (torch.cat(p) == labels).float().mean().item(), 2) for p in (tta, plain)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder holding cifar-10-batches-bin/")
    parser.add_argument("--report", type=Path, help="the benchmark's JSON lines, to compare with")
    args = parser.parse_args()
    reported = {}
    if args.report:
        for line in args.report.read_text().splitlines():
            record = json.loads(line)
            if "checkpoint" in record:
                reported[Path(record["checkpoint"]).name] = (record["test_acc"], record["test_acc_plain"])
    images, labels = official_test_set(args.data)
    for path in args.checkpoints:
        measured = accuracies(path, images, labels)
        claimed = reported.get(path.name)
        verdict = "" if claimed is None else (" matches the report" if list(claimed) == measured
                                              else f" DIFFERS from the report {claimed}")
        print(f"{path}: test_acc {measured[0]:.2f}% (TTA), {measured[1]:.2f}% plain{verdict}")


if __name__ == "__main__":
    main()
