"""The notebook's own run time: every cell timed through IPython's events, and the evaluation work that makes a
cell slow though it trains nothing."""
from types import SimpleNamespace

import torch
from torch import nn

from helpers.evaluation import augmented_logits
from helpers.lecture.timing import TTA_VIEWS, CellClock, evaluation_rows, time_reading
from helpers.models import S7Net, TutorialNet


class Events:
    def __init__(self):
        self.callbacks = {}

    def register(self, event, callback):
        self.callbacks[event] = callback


def test_the_clock_times_each_cell_by_its_first_line():
    shell = SimpleNamespace(events=Events())
    clock = CellClock(started=0.0).attach(shell)
    for source in ("\n  first = 1\nsecond = 2", ""):
        shell.events.callbacks["pre_run_cell"](SimpleNamespace(raw_cell=source))
        shell.events.callbacks["post_run_cell"](None)
    assert [line for line, _ in clock.cells] == ["first = 1", ""] and all(s >= 0 for _, s in clock.cells)
    shell.events.callbacks["post_run_cell"](None)  # a result without its start (the cell that attached the clock)
    assert len(clock.cells) == 2


def test_the_views_are_the_forward_passes_evaluation_makes():
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x.mean((2, 3))

    for tta, views in TTA_VIEWS.items():
        calls.clear()
        augmented_logits(Counting(), torch.rand(2, 3, 8, 8), tta)
        assert len(calls) == views, tta


def test_the_reading_names_the_slowest_cells_and_the_costliest_evaluation():
    rows = evaluation_rows({"TutorialNet": (TutorialNet(), "none"), "S7Net": (S7Net(), "flip")}, 10_000)
    assert rows[1] == {"network": "S7Net", "forward passes": 3, "images": 10_000, "MACs per image": 21_489_536,
                       "TMAC": 0.64}
    clock = CellClock()
    clock.cells = [("train()", 150.0), ("print(x)", 0.1), ("evaluate()", 111.0)]
    text = time_reading(clock, rows, slowest=2)
    assert "Its slowest cells: `train()` 2.5 min; `evaluate()` 111.0 s." in text
    assert "most arithmetic for S7Net: 3 forward passes" in text and "0.64 TMAC in fp32, 99 times TutorialNet's" in text
