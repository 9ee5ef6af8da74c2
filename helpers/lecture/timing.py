"""How long the notebook took and where the time went: the wall time of every cell, read from IPython's events,
and the arithmetic each network's evaluation costs, so that a slow cell's reason is computed, not typed."""
import time

from ..models import count_macs
from .records import duration_text

TTA_VIEWS = {"none": 1, "flip": 2, "flip-translate": 6}  # forward passes per image (evaluation.augmented_logits)


class CellClock:
    """The wall time of every cell run after attach(), with the cell's first line; `started` counts from an
    earlier moment (the notebook's first cell), so the total includes what ran before the clock existed."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.cells = []  # (first line, seconds)
        self._began, self._line = None, ""

    def attach(self, shell) -> "CellClock":
        shell.events.register("pre_run_cell", self.before)
        shell.events.register("post_run_cell", self.after)
        return self

    def before(self, info) -> None:
        self._began, self._line = time.perf_counter(), next(iter(info.raw_cell.strip().splitlines()), "")

    def after(self, result) -> None:
        if self._began is not None:
            self.cells.append((self._line, time.perf_counter() - self._began))
            self._began = None


def evaluation_rows(networks: dict, images: int, input_shape=(3, 32, 32)) -> list[dict]:
    """One row per {name: (model, tta)}: the forward passes its plain and TTA accuracy take on `images` test
    images, and the multiply-adds they add up to (evaluation runs in fp32)."""
    rows = []
    for name, (model, tta) in networks.items():
        passes, macs = 1 + (TTA_VIEWS[tta] if tta != "none" else 0), count_macs(model, input_shape)
        rows.append({"network": name, "forward passes": passes, "images": images, "MACs per image": macs,
                     "TMAC": round(passes * images * macs / 1e12, 2)})
    return rows


def time_reading(clock: CellClock, rows: list[dict], slowest: int = 3) -> str:
    """The run's total time, its slowest cells by their first line, and the network whose evaluation costs the
    most arithmetic against the next one (two rows at least): why a cell that only evaluates can be slow."""
    total = time.perf_counter() - clock.started
    top = sorted(clock.cells, key=lambda cell: -cell[1])[:slowest]
    cells = "; ".join(f"`{line[:60]}` {duration_text(seconds)}" for line, seconds in top)
    most, next_most = sorted(rows, key=lambda r: -work(r))[:2]
    return (f"This run took {duration_text(total)} from its first cell to this one. Its slowest cells: {cells}. "
            f"Evaluating costs the most arithmetic for {most['network']}: {most['forward passes']} forward passes "
            f"(plain, then each TTA view) over {most['images']:,} images at {most['MACs per image']:,} "
            f"multiply-adds each, {most['TMAC']:g} TMAC in fp32, {work(most) / work(next_most):.0f} times "
            f"{next_most['network']}'s: a cell that only loads and evaluates it is slow for that.")


def work(row: dict) -> int:
    """The multiply-adds of one evaluation_rows row."""
    return row["forward passes"] * row["images"] * row["MACs per image"]
