"""Sentences computed from what the notebook just measured: every number in them, and every comparison word
("above", "agree", "grew"), comes from the output they describe, so the prose cannot contradict the figure beside
it, whatever the preset, the seed or the machine."""
import math

import torch

from ..checker.rules import MIN_RF
from ..evaluation import confusion_matrix
from ..recipes import epochs_text

ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")  # CIFAR-10's two groups of classes
VEHICLES = ("airplane", "automobile", "ship", "truck")


def verdict(check) -> str:
    """"pass", "fail" or "not checked here" for one helpers.checker.spec Check."""
    return check.state


def rules_reading(checks, network: str) -> str:
    """Which rows of check_s7's table the network fails, by name (the table beside it says why). Rows, not rules:
    the table checks the last rule in two rows, parameters and accuracy, so its rows outnumber the rules by one."""
    failed = [c.name for c in checks if verdict(c) == "fail"]
    unchecked = [c.name for c in checks if verdict(c) == "not checked here"]
    text = (f"{network} fails {len(failed)} of the table's {len(checks)} rows: {', '.join(failed)}" if failed else
            f"{network} meets every rule checked here")
    return text + (f"; not checked on this machine: {', '.join(unchecked)}." if unchecked else ".")


def cost_reading(rows) -> str:
    """Which block of describe.block_table's rows holds the most parameters and which spends the most
    multiply-adds, with their shares of the whole: where a network's weights and its arithmetic go."""
    def count(row, column):
        return int(row[column].replace(",", ""))

    parts = []
    for column, words, unit in (("params", "holds the most parameters", ""),
                                ("MACs", "spends the most multiply-adds", " per image")):
        total, top = sum(count(row, column) for row in rows), max(rows, key=lambda row: count(row, column))
        parts.append((top["block"], f"{words}, {count(top, column):,} of {total:,}{unit} "
                                    f"({count(top, column) / total:.0%})"))
    (weights, held), (arithmetic, spent) = parts
    return (f"{weights} {held}, and {spent}." if weights == arithmetic else
            f"{weights} {held}; {arithmetic} {spent}.")


def rf_reading(analytic: int, measured: int) -> str:
    """The analytic receptive field against the gradient measurement, in one sentence."""
    agreement = "the two agree" if analytic == measured else f"they differ by {abs(analytic - measured)} px"
    return (f"The formulas give a receptive field of {analytic} px; measured from gradients it is {measured} px: "
            f"{agreement}. The rule asks for more than {MIN_RF} px.")


def smoothed_loss_floor(epsilon: float, classes: int = 10) -> float:
    """The least cross-entropy a label-smoothed target allows: its own entropy (0 when epsilon is 0)."""
    if not epsilon:
        return 0.0
    true, other = 1 - epsilon + epsilon / classes, epsilon / classes
    return -(true * math.log(true) + (classes - 1) * other * math.log(other))


def curve_reading(history, recipe) -> str:
    """What the curves show at the end of training: the last epoch's training accuracy against its plain test
    accuracy, why the test one may be the higher, and the floor label smoothing puts under the loss."""
    last = history[-1]
    text = (f"Over its {epochs_text(recipe.epochs)} the training loss fell from "
            f"{history[0]['loss']:.2f} (first epoch's mean) to {last['loss']:.2f} (last epoch's mean).")
    if last.get("test_acc") is not None:
        train, test = last["train_acc"], last["test_acc"]
        text += (f" In the last epoch the training accuracy, the mean over its steps, was {train:.1f}%; the plain "
                 f"test accuracy at its end {test:.1f}%.")
        if test > train:
            views = " on shifted or flipped images" if recipe.translate or recipe.flip else ""
            text += (f" The test figure is the higher: it is measured with the epoch's final weights on plain images, "
                     f"while the training figure averages the whole epoch, as the weights improved{views}.")
    if recipe.label_smoothing:
        text += (f" With label smoothing {recipe.label_smoothing:g} the loss cannot fall below "
                 f"{smoothed_loss_floor(recipe.label_smoothing):.2f}, the entropy of the smoothed target.")
    return text


def confusion_reading(labels, logits, classes, which: str = "plain") -> str:
    """The weakest and strongest classes, the largest confusions, and how the mistakes split between CIFAR-10's
    animals and vehicles, against what mistakes spread evenly over the wrong classes would give; `which` names the
    predictions the logits are (plain, or with TTA)."""
    counts = confusion_matrix(labels, logits.argmax(1), len(classes))
    per_class = (100 * counts.diag() / counts.sum(1).clamp_min(1)).tolist()
    order = sorted(range(len(classes)), key=per_class.__getitem__)
    wrong = counts - torch.diag(counts.diag())
    top = [divmod(i, len(classes)) for i in wrong.flatten().argsort(descending=True)[:5].tolist()]
    named = [f"{classes[i]} ({per_class[i]:.1f}%)" for i in order]
    text = (f"Per-class accuracy ({which}): weakest {', '.join(named[:3])}; strongest {', '.join(named[-3:])}. "
            f"Largest confusions (true -> predicted): "
            f"{', '.join(f'{classes[t]} -> {classes[p]} ({int(wrong[t, p])})' for t, p in top)}.")
    if set(classes) != set(ANIMALS + VEHICLES) or not wrong.sum():
        return text
    group = torch.tensor([name in ANIMALS for name in classes])
    across = group[:, None] != group[None, :]
    share = 100 * wrong[across].sum().item() / wrong.sum().item()
    # Each true class's mistakes spread evenly over its 9 wrong classes: the share that would cross the groups.
    even = 100 * sum(wrong[t].sum().item() * across[t].sum().item() / (len(classes) - 1)
                     for t in range(len(classes))) / wrong.sum().item()
    crossing = [f"{classes[t]} -> {classes[p]}" for t, p in top if across[t, p]]
    return text + (f" {share:.0f}% of the {int(wrong.sum()):,} mistakes take an animal for a vehicle or a vehicle for "
                   f"an animal, against {even:.0f}% if each class's mistakes spread evenly over the other nine: the "
                   f"network confuses {'within' if share < even else 'across'} the two groups more than chance. "
                   + (f"Of the largest confusions, {len(crossing)} cross{'es' * (len(crossing) == 1)} the groups "
                      f"({', '.join(crossing)})."
                      if crossing else "None of the largest confusions crosses the groups."))


def erf_reading(table, block: str, images_table=None, image_side: int | None = None, before: str = "untrained",
                after: str = "trained") -> str:
    """The effective field of `block` before and after training against its theoretical field, from erf_table's
    rows, and at how many blocks training widened it; with `images_table` (the same measure on a mosaic of test
    images), whether the change is the same there, so that it is the network's and not the noise probe's; with
    `image_side`, how a field wider than the network's images fits them."""
    row = next(r for r in table if r["block"] == block)

    def changes(rows) -> tuple:
        return (sum(r[f"50% in ({after})"] > r[f"50% in ({before})"] for r in rows),
                sum(r[f"50% in ({after})"] < r[f"50% in ({before})"] for r in rows))

    (wider, narrower), field = changes(table), row["theoretical RF"]
    text = (f"At {block} the theoretical field is {field} px wide. After training, half of the "
            f"gradient lies within a square of {row[f'50% in ({after})']} px and 95% within "
            f"{row[f'95% in ({after})']} px; before training, {row[f'50% in ({before})']} and "
            f"{row[f'95% in ({before})']} px. Training widened the half-gradient square at {wider} of the "
            f"{len(table)} blocks and narrowed it at {narrower}.")
    if images_table is not None:
        same = changes(images_table) == (wider, narrower)
        text += (f" On a mosaic of test images it widened it at {changes(images_table)[0]} and narrowed it at "
                 f"{changes(images_table)[1]}: " + ("the same count, so the change belongs to the trained network, "
                                                    "not to the noise it is probed with." if same else
                                                    "the probe's content changes the count."))
    if image_side is not None and field > image_side:
        text += (f" The network's own images are {image_side} px wide: a field of {field} px holds the whole image "
                 f"wherever the unit sits, and the part of its window beyond the image reads the zero padding, "
                 f"which is why the field is probed here on images wide enough to hold all of it.")
    return text


def gradcam_reading(summary: dict, layer: str, size) -> str:
    """What the Grad-CAM maps of the mistakes show, from gradcam.evidence_summary."""
    shown = summary["shown"]
    if not shown:
        return "No mistakes to explain."
    text = (f"Grad-CAM at {layer}: its map is {size[0]}x{size[1]}, upsampled bilinearly to the image. Of the {shown} "
            f"mistakes shown, the chosen class has positive evidence in {summary['with evidence, chosen']} and the "
            f"true class in {summary['with evidence, true']} (an empty map, titled \"no evidence\", means that no "
            f"position of {layer} speaks for that class).")
    shares = [f"the {role} class's {summary[f'centre, {role}']:.0f}%" for role in ("chosen", "true")
              if summary[f"centre, {role}"] is not None]
    if shares:
        text += (f" Of the weight of a map, the middle quarter of the image (its central half in each direction) "
                 f"holds on average {' and '.join(shares)}, against 25% for an even map.")
    if summary["shared"] is not None:
        text += (f" Where both classes have evidence ({summary['both']} of the {shown}), their two maps share "
                 f"{summary['shared']:.0f}% of their weight on average (100%: the same places; 0%: disjoint).")
    return text


def size_steps(rows) -> list[str]:
    """Each layer of an rf_table that changes the map's size, with the output-size formula
    n_out = floor((n_in + 2p - d(k - 1) - 1) / s) + 1 worked out, under a line that states it."""
    steps = ["n_out = floor((n_in + 2p - d(k-1) - 1) / s) + 1 at each layer that changes the size:"]
    for row in rows:
        if row["n_out"] != row["n_in"]:
            k, s, p, d, n = row["kernel"], row["stride"], row["padding"], row["dilation"], row["n_in"]
            steps.append(f"  {row['name']} ({row['kind']}, k {k}, s {s}, p {p}, d {d}): "
                         f"floor(({n} + {2 * p} - {d * (k - 1)} - 1) / {s}) + 1 = {row['n_out']}")
    return steps
