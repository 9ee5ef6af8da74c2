"""The sentences the notebook prints about its outputs: every number and every comparison word must follow the
output, so each reading is tested on made-up outputs that point both ways."""
import math

import pytest
import torch

from helpers.checker.receptive_field import rf_table
from helpers.checker.spec import Check
from helpers.lecture.readings import (
    confusion_reading,
    cost_reading,
    curve_reading,
    erf_reading,
    gradcam_reading,
    rf_reading,
    rules_reading,
    size_steps,
    smoothed_loss_floor,
)
from helpers.models import S7AirNet
from helpers.recipes import PRESETS

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_rules_reading_names_the_broken_rules_only():
    checks = [Check("device", "", "", "pass"), Check("dilated conv", "", "none", "fail"),
              Check("test accuracy", "", "50%", "fail")]
    assert rules_reading(checks, "Net") == "Net fails 2 of the table's 3 rows: dilated conv, test accuracy."
    assert rules_reading(checks[:1], "Net") == "Net meets every rule checked here."


def test_rules_reading_keeps_rules_not_checked_apart():
    text = rules_reading([Check("device", "", "no GPU", "not checked here"), Check("parameters", "", "1", "pass")],
                         "Net")
    assert text == "Net meets every rule checked here; not checked on this machine: device."


def test_cost_reading_names_the_block_with_the_most_weights_and_the_one_with_the_most_arithmetic():
    rows = [{"block": "c1", "params": "100", "MACs": "9,000"}, {"block": "pool1", "params": "0", "MACs": "0"},
            {"block": "c2", "params": "300", "MACs": "1,000"}]
    assert cost_reading(rows) == ("c2 holds the most parameters, 300 of 400 (75%); c1 spends the most multiply-adds, "
                                  "9,000 of 10,000 per image (90%).")
    rows[0]["MACs"] = "0"
    assert cost_reading(rows) == ("c2 holds the most parameters, 300 of 400 (75%), and spends the most "
                                  "multiply-adds, 1,000 of 1,000 per image (100%).")


@pytest.mark.parametrize("analytic, measured, words", [(74, 74, "the two agree"), (74, 32, "they differ by 42 px")])
def test_rf_reading(analytic, measured, words):
    text = rf_reading(analytic, measured)
    assert f"{analytic} px" in text and f"it is {measured} px: {words}." in text and "more than 44 px" in text


def test_the_smoothed_loss_floor_is_the_target_s_entropy():
    assert smoothed_loss_floor(0) == 0
    assert smoothed_loss_floor(0.2) == pytest.approx(-(0.82 * math.log(0.82) + 9 * 0.02 * math.log(0.02)))
    target = torch.full((10,), 0.02)
    target[0] = 0.82
    assert smoothed_loss_floor(0.2) == pytest.approx(torch.nn.functional.cross_entropy(
        target.log()[None], torch.tensor([0]), label_smoothing=0.2).item(), rel=1e-5)  # reached at the target


def history(train, test, epochs=2):
    return [{"epoch": e, "loss": 2.0 / e, "train_acc": train, "test_acc": test} for e in range(1, epochs + 1)]


def test_curve_reading_explains_a_test_accuracy_above_the_training_one():
    text = curve_reading(history(62.0, 78.0), PRESETS["fast"].recipe)
    assert "Over its 1.2 epochs the training loss fell from 2.00 (first epoch's mean) to 1.00" in text and "was 62.0%; the plain test accuracy at its end 78.0%"\
        in text
    assert "The test figure is the higher" in text and "shifted or flipped" in text
    assert "cannot fall below 0.87" in text


def test_curve_reading_gives_no_reason_where_none_is_needed():
    text = curve_reading(history(90.0, 80.0), PRESETS["tutorial"].recipe)
    assert "higher" not in text and "cannot fall below" not in text  # the tutorial has no label smoothing
    assert "cannot fall" not in curve_reading([{**history(1, 1)[0], "test_acc": None}], PRESETS["tutorial"].recipe)


def confusion(pairs):
    """Labels and logits holding `pairs` [(true, predicted, count)] and 10 right answers per class."""
    labels, predicted = [c for c in range(10) for _ in range(10)], [c for c in range(10) for _ in range(10)]
    for true, guess, count in pairs:
        labels += [CLASSES.index(true)] * count
        predicted += [CLASSES.index(guess)] * count
    return torch.tensor(labels), torch.nn.functional.one_hot(torch.tensor(predicted), 10).float()


def test_confusion_reading_within_the_groups():
    labels, logits = confusion([("cat", "dog", 30), ("dog", "cat", 20), ("truck", "automobile", 10),
                                ("bird", "airplane", 5)])
    text = confusion_reading(labels, logits, CLASSES)
    assert text.startswith("Per-class accuracy (plain): weakest cat (25.0%), dog (33.3%), truck (50.0%); strongest")
    assert "Largest confusions (true -> predicted): cat -> dog (30), dog -> cat (20), truck -> automobile (10)" in text
    # 5 of 65 mistakes cross the groups; spread evenly they would cross in (30*4 + 20*4 + 10*6 + 5*4)/9 of 65
    assert "8% of the 65 mistakes" in text and f"against {100 * (280 / 9) / 65:.0f}%" in text
    assert "confuses within the two groups more than chance" in text
    assert "Of the largest confusions, 1 crosses the groups (bird -> airplane)." in text


def test_confusion_reading_across_the_groups():
    labels, logits = confusion([("cat", "truck", 30), ("ship", "frog", 20)])
    text = confusion_reading(labels, logits, CLASSES)
    assert "100% of the 50 mistakes" in text and "confuses across the two groups more than chance" in text
    assert "2 cross the groups" in text


def test_confusion_reading_counts_with_thousands_separators():
    labels, logits = confusion([("cat", "dog", 1200)])
    assert "0% of the 1,200 mistakes" in confusion_reading(labels, logits, CLASSES)


def test_confusion_reading_of_other_classes_skips_the_groups():
    labels, logits = confusion([("cat", "dog", 3)])
    text = confusion_reading(labels, logits, [f"class {i}" for i in range(10)])
    assert "Largest confusions" in text and "groups" not in text


def test_erf_reading_counts_the_blocks_training_widened():
    table = [{"block": b, "theoretical RF": rf, "50% in (untrained)": u, "95% in (untrained)": u + 4,
              "50% in (trained)": t, "95% in (trained)": t + 8} for b, rf, u, t in
             (("c1", 3, 3, 3), ("c2", 12, 8, 10), ("c3", 38, 22, 18), ("c4", 74, 34, 40))]
    text = erf_reading(table, "c4")
    assert text.startswith("At c4 the theoretical field is 74 px wide. After training, half of the gradient lies "
                           "within a square of 40 px and 95% within 48 px; before training, 34 and 38 px.")
    assert text.endswith("widened the half-gradient square at 2 of the 4 blocks and narrowed it at 1.")
    same = erf_reading(table, "c4", table, image_side=32)
    assert "On a mosaic of test images it widened it at 2 and narrowed it at 1: the same count" in same
    assert "images are 32 px wide: a field of 74 px holds the whole image" in same
    other = [{**row, "50% in (trained)": row["50% in (untrained)"]} for row in table]
    assert erf_reading(table, "c4", other, image_side=80).endswith(
        "widened it at 0 and narrowed it at 0: the probe's content changes the count.")  # no field beyond 80 px


def test_gradcam_reading_says_only_what_the_summary_holds():
    summary = {"shown": 4, "with evidence, chosen": 4, "with evidence, true": 3, "both": 3, "centre, chosen": 61.2,
               "centre, true": 40.0, "shared": 55.5}
    text = gradcam_reading(summary, "c3", (8, 8))
    assert "its map is 8x8" in text and "positive evidence in 4 and the true class in 3" in text
    assert "the chosen class's 61% and the true class's 40%, against 25%" in text
    assert "(3 of the 4), their two maps share 56% of their weight" in text
    none = gradcam_reading({**summary, "with evidence, chosen": 0, "with evidence, true": 0, "both": 0,
                            "centre, chosen": None, "centre, true": None, "shared": None}, "c3", (7, 7))
    assert "middle quarter" not in none and "share" not in none and "nan" not in none
    assert gradcam_reading({**summary, "shown": 0}, "c3", (8, 8)) == "No mistakes to explain."


def test_size_steps_work_out_s7airnet_s_map_sizes():
    steps = size_steps(rf_table(S7AirNet()))
    assert steps[0].startswith("n_out = floor(")
    assert [step.split("= ")[-1] for step in steps[1:]] == ["31", "15", "7", "3", "1"]
    assert steps[1] == "  c1.0 (conv, k 2, s 1, p 0, d 1): floor((32 + 0 - 1 - 1) / 1) + 1 = 31"
