"""How every run starts, in one place: the precision decided and said, the seed set, the network built from it.

The command (helpers.train), the notebook and the benchmarks start their runs here, so that one seed gives one
network and one arithmetic wherever it trains, whether the network is a preset's or anyone's (--net).
"""
from typing import Callable, NamedTuple

import torch
from torch import nn

from .loop import seed_everything
from .recipes import Recipe
from .runtime.precision import decide_precision


class Started(NamedTuple):
    recipe: Recipe  # its precision decided
    generator: torch.Generator  # orders and augments the batches
    model: nn.Module  # built after the seed: its initial weights come from the seed too
    precision_rule: str  # the line that says which precision and why


def start_run(recipe: Recipe, device: torch.device, seed: int, build: Callable[[], nn.Module],
              resume_from: dict = None, report: Callable[[str], None] = print) -> Started:
    """Decide the recipe's precision for this device (a resumed run's own under "auto") and report its rule, seed
    every random generator, then build the network."""
    recipe, rule = decide_precision(recipe, device, resume_from)
    report(rule)
    generator = seed_everything(seed)
    return Started(recipe, generator, build(), rule)
