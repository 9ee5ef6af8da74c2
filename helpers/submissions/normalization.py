"""--normalize: what stands in front of a network written for normalised inputs, since our images are [0, 1].

One parser for `helpers.check --weights` and `helpers.train --net`: "cifar" (CIFAR-10's mean and std, the default
of a network written with transforms.Normalize), "none" (a network that normalises itself), or explicit
"M1,M2,M3/S1,S2,S3"."""
import argparse
import math

from ..models import CIFAR10_MEAN, CIFAR10_STD


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) for `text`, None for "none"; argparse.ArgumentTypeError (its message is shown) otherwise."""
    if text.lower() == "cifar":
        return CIFAR10_MEAN, CIFAR10_STD
    if text.lower() == "none":
        return None
    means, slash, stds = text.partition("/")
    try:
        mean, std = tuple(float(v) for v in means.split(",")), tuple(float(v) for v in stds.split(","))
    except ValueError:
        mean = std = ()
    if not slash or len(mean) != len(std) or not all(map(math.isfinite, mean + std)) or min(std, default=0) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not cifar, none, or means/stds such as "
                                         f"0.49,0.48,0.45/0.25,0.24,0.26 (as many of each, every std > 0)")
    return mean, std
