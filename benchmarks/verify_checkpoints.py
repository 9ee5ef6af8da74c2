"""Re-evaluate saved checkpoints without helpers' data or evaluation code, and compare with what was reported.

    python benchmarks/verify_checkpoints.py runs/bench/seed*.pt --report runs/bench/report.jsonl
    python benchmarks/verify_checkpoints.py weights/*.pt

Each checkpoint is compared with the benchmark's report (the record whose "checkpoint" is this very file, by its
path as reported), or, without --report, with the test accuracy the checkpoint itself carries. Only the network
and the name of its TTA come from helpers (helpers.checkpoints); the test images are read straight from the
official files after checking their MD5, and the accuracy (with the checkpoint's TTA, and plain) is computed here
in a few lines of torch, on this machine's CPU, on the test images the checkpoint says its figure counts
(`test_images`: the first 1,000 for a --quick model; all 10,000 for a file that does not say). A record measured
on this very processor (its "processor", and no GPU as its "device"; or a record that names none) must be matched
exactly; one measured elsewhere, a GPU or another CPU, within TOLERANCE_IMAGES test images: near-tied logits may round the other way there (cuDNN picks Winograd or
FFT algorithms; another CPU has other kernels). Exit status 1 when a checkpoint differs or is missing from the
report, 2 for unusable input.
"""
import argparse
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
import torch  # noqa: E402

from helpers.checkpoints import CheckpointError, load_checkpoint, rebuild_model, reported_tta  # noqa: E402
from helpers.runtime.device import processor_name  # noqa: E402

TEST_MD5 = {"cifar-10-batches-bin/test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
            "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e"}


TOLERANCE_IMAGES = 3  # of the test set: 0.03% of 10,000, when the record was measured on another device


class Unusable(Exception):
    """Input this script cannot use: a missing or altered test file, a report that is not the benchmark's."""


def official_test_set(data_root: Path):
    """The 10,000 test images and labels, from whichever official layout the data root holds, MD5-checked."""
    for name, md5 in TEST_MD5.items():
        path = Path(data_root) / name
        if not path.is_file():
            continue
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise Unusable(f"{path} cannot be read ({error.strerror or error})") from None
        if hashlib.md5(raw).hexdigest() != md5:
            raise Unusable(f"{path} is not the official file (its MD5 differs): truncated or altered")
        if name.endswith(".bin"):  # records of 1 label byte and 3,072 pixel bytes (R, G, B planes)
            records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
            return (torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()),
                    torch.from_numpy(records[:, 0].astype(np.int64)))
        batch = pickle.loads(raw, encoding="bytes")  # the official file: its MD5 was checked above
        images = torch.from_numpy(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        return images, torch.tensor(batch[b"labels"], dtype=torch.int64)
    raise Unusable(f"no CIFAR-10 test file in {data_root}: expected {' or '.join(TEST_MD5)}")


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


def counted_test_images(checkpoint: dict, path: Path, images, labels):
    """The test images the checkpoint's figure counts: the first `test_images` it carries (1,000 for a --quick
    model), all 10,000 when it carries none."""
    n = checkpoint.get("test_images", len(images))
    if not 0 < n <= len(images):
        raise CheckpointError(f"{path} says its accuracy counts {n} test images: there are {len(images)}")
    return images[:n], labels[:n]


@torch.no_grad()
def accuracies(checkpoint: dict, path: Path, images, labels):
    """[accuracy with the recipe's TTA, plain accuracy] of a loaded checkpoint (read from `path`) on the given test
    images, in percent, rounded as the benchmark reports them."""
    model, tta = rebuild_model(checkpoint, path).eval(), reported_tta(checkpoint)
    plain, augmented = [], []
    for x in (images[i:i + 1000].float() / 255 for i in range(0, len(images), 1000)):
        plain.append(model(x).argmax(1))
        augmented.append(sum(w * model(v) for w, v in weighted_views(x, tta)).argmax(1))
    return [round(100 * (torch.cat(p) == labels).float().mean().item(), 2) for p in (augmented, plain)]


def reported_by_path(report: Path) -> dict:
    """{resolved checkpoint path: its record} from a benchmark report, its paths as reported (a relative one from the
    folder this runs in, as the benchmark's commands run from the repository's root)."""
    try:
        records = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise Unusable(f"the report {report} cannot be read as the benchmark's JSON lines ({error})") from None
    reported = {}
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or "checkpoint" not in record:
            continue  # the summary line, which names no checkpoint
        accuracies_reported = [record.get("test_acc"), record.get("test_acc_plain")]
        if not isinstance(record["checkpoint"], str) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in accuracies_reported):
            raise Unusable(f"line {number} of the report {report} is not the benchmark's: it needs a checkpoint path "
                           f"and the numbers test_acc and test_acc_plain")
        reported[os.path.realpath(record["checkpoint"])] = record
    return reported


def claimed(checkpoint: dict, path: Path, reported) -> dict | None:
    """What was reported for this checkpoint: its record in the report, else what it carries itself (test_acc,
    test_acc_plain and processor where saved); None when there is nothing to compare."""
    if reported is not None:
        return reported.get(os.path.realpath(path))
    return checkpoint if "test_acc" in checkpoint else None


def tolerance(claim: dict, test_images: int) -> float:
    """How far, in percent, the re-evaluation here may lie from the claim: 0 for a claim measured on this very CPU
    (or one that does not say where), TOLERANCE_IMAGES images of the test set for one measured on another device."""
    here = claim.get("processor") in (None, processor_name(torch.device("cpu")))
    return 0.0 if here and str(claim.get("device", "cpu")) == "cpu" else 100 * TOLERANCE_IMAGES / test_images


def verdict(measured: list, claim, report, test_images: int) -> tuple[str, bool]:
    """The words after the measured accuracies, and whether the checkpoint passed."""
    source = f"the report {report}" if report else "the accuracy it carries"
    if claim is None:
        return (f" is not in the report {report}", False) if report else ("", True)
    allowed = tolerance(claim, test_images)
    elsewhere = f"{TOLERANCE_IMAGES} images ({allowed:g}%): it was measured on {claim.get('processor')}"
    accuracies = [claim.get("test_acc"), claim.get("test_acc_plain")]
    if all(c is None or abs(c - m) <= allowed + 1e-9 for c, m in zip(accuracies, measured)):
        return f" matches {source}" + (f" within {elsewhere}" if allowed else " exactly"), True
    return f" DIFFERS from {source} {accuracies}" + (f" by more than {elsewhere}" if allowed else ""), False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/verify_checkpoints.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT",
                        help="checkpoints written by the benchmark (--out) or helpers.train, or the committed weights")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CIFAR10_ROOT", "data")),
                        help="folder holding cifar-10-batches-bin/ or cifar-10-batches-py/ (default $CIFAR10_ROOT, "
                             "else ./data)")
    parser.add_argument("--report", type=Path, help="the benchmark's JSON lines to compare with (its --out folder's "
                                                    "report.jsonl); without it, each checkpoint's own test_acc")
    args = parser.parse_args(argv)
    try:
        reported = reported_by_path(args.report) if args.report else None
        images, labels = official_test_set(args.data)
    except Unusable as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    failures = 0
    for path in args.checkpoints:
        try:
            checkpoint = load_checkpoint(path)
            counted = counted_test_images(checkpoint, path, images, labels)
            measured = accuracies(checkpoint, path, *counted)
        except CheckpointError as error:
            print(f"{path}: {error}")
            failures += 1
            continue
        words, passed = verdict(measured, claimed(checkpoint, path, reported), args.report, len(counted[1]))
        failures += not passed
        print(f"{path}: test_acc {measured[0]:.2f}% (TTA: {reported_tta(checkpoint)}), {measured[1]:.2f}% plain{words}")
    if failures:  # a script or CI that checks the status must see it
        sys.exit(f"{failures} of {len(args.checkpoints)} checkpoints do not match or could not be checked")


if __name__ == "__main__":
    main()
