"""The training loop (helpers.loop): the schedule, the epoch record and line, seeding, resuming bit for bit."""
import json
from dataclasses import replace

import pytest
import torch

from helpers.checkpoints import load_model, load_resumable, save_checkpoint
from helpers.evaluation import evaluate, predict
from helpers.loop import format_epoch, seed_everything, train
from helpers.models import S7Net
from helpers.optimizers import build_optimizers, highest_lrs, lr_factor, set_learning_rates
from helpers.recipes import PRESETS, Recipe, epoch_count, epochs_text, quick_data, resolve, training_steps
from helpers.train import main
from tests.conftest import TINY_AIR

TINY = (8, 16, 32, 48)  # S7Net widths small enough for a few CPU steps in a test


def test_triangular_schedule_rises_to_the_peak_then_falls_to_zero():
    recipe = Recipe(lr=0.4, warmup=0.25)
    factors = [lr_factor(step, 100, recipe) for step in range(100)]
    assert factors[0] == 1 / 25 and factors[24] == 1.0 and max(factors) == 1.0
    assert all(a < b for a, b in zip(factors[:25], factors[1:25]))
    assert all(a > b for a, b in zip(factors[25:], factors[26:]))
    assert factors[-1] == 1 / 75 and lr_factor(100, 100, recipe) == 0
    assert {lr_factor(step, 100, replace(recipe, schedule="constant")) for step in range(100)} == {1.0}


def test_every_group_trains_at_the_schedules_factor_of_its_own_peak_lr():
    """SGD's weights at lr, BatchNorm's shifts at lr x bias_lr_scale, Muon's filter banks at muon_lr: one factor."""
    from helpers.models import S7AirNet
    recipe = replace(PRESETS["fast"].recipe, precision="fp32")
    sgd, muon = build_optimizers(S7AirNet(TINY_AIR), recipe)
    assert [g["initial_lr"] for g in sgd.param_groups + muon.param_groups] == [0.16, 0.16 * 64, 0.12]
    set_learning_rates([sgd, muon], 0.5)
    assert [g["lr"] for g in sgd.param_groups + muon.param_groups] == [0.08, 0.16 * 32, 0.06]



def test_the_filter_banks_are_found_once_per_build(monkeypatch):
    from helpers import optimizers
    from helpers.models import S7AirNet
    calls = []
    found = optimizers.muon_banks
    monkeypatch.setattr(optimizers, "muon_banks", lambda *args: calls.append(args) or found(*args))
    optimizers.build_optimizers(S7AirNet(TINY_AIR), replace(PRESETS["fast"].recipe, precision="fp32"))
    assert len(calls) == 1


def test_the_epoch_line_gives_the_part_of_an_epoch_and_each_groups_highest_lr():
    """fast trains 1.2 epochs: its second is a fifth of one, and the lrs are what the schedule gave each group
    in it (the triangular schedule has fallen from its peak by then), not the recipe's constant."""
    from helpers.models import S7AirNet
    recipe = replace(PRESETS["fast"].recipe, precision="fp32", warmup=0.5)
    optimizers = build_optimizers(S7AirNet(TINY_AIR), recipe)
    assert highest_lrs(optimizers, 0, 10, 10, recipe) == pytest.approx({"weights": 0.16, "norms": 0.16 * 64,
                                                                         "muon": 0.12})
    assert highest_lrs(optimizers, 8, 10, 10, recipe) == pytest.approx({"weights": 0.16 * 0.4, "norms": 0.16 * 25.6,
                                                                         "muon": 0.12 * 0.4})
    entry = {"epoch": 2, "fraction": 0.2, "loss": 1.0, "train_acc": 50.0, "test_acc": 81.234, "seconds": 3.0,
             "max_lr": {"weights": 0.064, "muon": 0.048}}
    assert format_epoch(entry) == ("epoch  2 (0.2 of one)  loss 1.000  train 50.00%  test (plain) 81.23%  "
                                   "max lr weights 0.064, muon 0.048  3.0 s")
    assert "of one" not in format_epoch({**entry, "fraction": 1.0})

@pytest.fixture(scope="module")
def small_real(real_data):
    return real_data.subset(1024, 500)


def _train(data, seed=0, **overrides):
    generator = seed_everything(seed)
    model = S7Net(TINY)
    recipe = replace(Recipe(), **{"batch_size": 64, "epochs": 3, "precision": "fp32", **overrides})
    history = train(model, data, recipe, generator, torch.device("cpu"), progress=False)
    return model, history


@pytest.mark.slow
def test_training_lowers_the_loss_and_records_the_history(small_real):
    model, history = _train(small_real)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"] - 0.1
    assert history[-1]["train_acc"] > history[0]["train_acc"]
    assert all(h["seconds"] > 0 and 0 <= h["test_acc"] <= 100 for h in history)
    assert history[-1]["test_acc"] > 25  # well above chance (10%) after 48 steps
    for h in history:  # every step's loss and accuracy too (16 steps of 64 images an epoch): the curves
        assert len(h["step_loss"]) == len(h["step_acc"]) == 16
        assert h["loss"] == pytest.approx(sum(h["step_loss"]) / 16) and h["train_acc"] == sum(h["step_acc"]) / 16
        assert all(100 * round(a * 64 / 100) / 64 == a for a in h["step_acc"])  # whole images of 64 right


def test_training_is_reproducible_on_the_cpu(small_real):
    data = small_real.subset(256, 100)
    first, _ = _train(data, seed=3, epochs=1)
    second, _ = _train(data, seed=3, epochs=1)
    other, _ = _train(data, seed=4, epochs=1)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(),
                               other.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.c1[0][0].weight, other.c1[0][0].weight)


def test_batch_larger_than_the_data_is_a_clear_error(small_real):
    with pytest.raises(ValueError, match="batch size 512 is larger than the 100 training images"):
        train(S7Net(TINY), small_real.subset(100, 10), Recipe(precision="fp32"), device=torch.device("cpu"),
              progress=False)


def test_evaluate_and_tta_match_a_computation_by_hand(small_real):
    model = S7Net(TINY).eval()
    images, labels = small_real.test_images[:200], small_real.test_labels[:200]
    x = images.float() / 255
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))
    assert evaluate(model, images, labels) == pytest.approx(100 * (plain.argmax(1) == labels).float().mean().item())
    assert torch.allclose(predict(model, images, tta="flip"), (plain + mirrored) / 2, atol=1e-5)


def test_checkpoint_rebuilds_exactly_the_evaluated_model(tmp_path, small_real):
    model, _ = _train(small_real.subset(256, 100), epochs=1)
    path = save_checkpoint(model, tmp_path / "out" / "s7net.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["s7net.pt"]  # no temporary file left behind
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["model_kwargs"] == {"widths": list(TINY), "num_classes": 10, "dilation": 2}
    rebuilt = S7Net(**checkpoint["model_kwargs"])
    rebuilt.load_state_dict(checkpoint["state_dict"])
    for (name, saved), trained in zip(rebuilt.state_dict().items(), model.state_dict().values()):
        assert torch.equal(saved, trained), name
    # Same weights; the trained copy is channels_last, so its conv kernels may round differently.
    images = small_real.test_images[:100]
    expected = predict(model, images)
    for loaded in (rebuilt, load_model(path)):
        logits = predict(loaded, images)
        assert torch.allclose(logits, expected, atol=1e-4) and torch.equal(logits.argmax(1), expected.argmax(1))


def test_quick_mode_shrinks_data_and_schedule_and_explicit_overrides_still_win(small_real):
    data = quick_data(small_real)
    assert (len(data.train_images), len(data.test_images)) == (1024, 500)  # all of small_real's 1024 and 500
    quick = resolve("s7net", quick=True).recipe  # batch 512 shrinks to 256; the lr is the preset's
    assert (quick.epochs, quick.batch_size, quick.lr) == (1, 256, resolve("s7net").recipe.lr)
    assert resolve("fast", quick=True).recipe.batch_size == 128  # a batch already below 256 is kept
    overridden = resolve("full", quick=True, epochs=2, batch_size=64, precision="fp16").recipe
    assert (overridden.epochs, overridden.batch_size, overridden.precision) == (2, 64, "fp16")
    assert resolve("fast", epochs=None) == PRESETS["fast"]  # None keeps the preset's value


def test_command_line_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--epochs", "--batch-size", "--data", "--seed", "--out", "--preset", "--quick"):
        assert option in help_text
    # Each preset's network and length, read from the presets themselves (full uses S7AirNet's default widths).
    words = " ".join(help_text.split())
    for summary in ("fast: S7AirNet 24 128 256 256, 1.2 epochs;", "full: S7AirNet 64 256 256 256, 12 epochs",
                    "s7net: S7Net 32 64 128 192, 5 epochs", "tutorial: TutorialNet, 2 epochs"):
        assert summary in words


@pytest.mark.slow
def test_command_line_trains_saves_and_prints_the_accuracy(tmp_path, real_data_root, capsys):
    test_acc = main(["--quick", "--data", str(real_data_root), "--out", str(tmp_path), "--seed", "1"])
    out = capsys.readouterr().out
    assert f"final test accuracy: {test_acc:.2f}%" in out
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["test_acc"] == test_acc and len(record["history"]) == 1
    model = load_model(tmp_path / "s7airnet.pt")  # the default preset's network, named by its architecture
    assert model.model_kwargs["widths"] == [24, 128, 256, 256]


def test_unknown_preset_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "turbo"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_fractional_epoch_count_ends_the_last_epoch_early_with_the_schedule(small_real, tmp_path):
    """airbench trains 9.9 epochs: here 1.5 epochs of 16 steps are 16 + 8 steps, the lr reaching zero at the last."""
    model, history = _train(small_real, epochs=1.5)
    assert [len(h["step_loss"]) for h in history] == [16, 8]
    recipe = replace(Recipe(), batch_size=64, epochs=1.5)
    # warm-up 25%: 6 steps up, 18 down, the last step at 1/18 of the peak
    assert lr_factor(23, 24, recipe) == 1 / 18 and lr_factor(24, 24, recipe) == 0
    # Stopped after the first epoch and resumed, it ends where the whole run ends.
    generator = seed_everything(0)
    stopped = S7Net(TINY)
    run = replace(Recipe(), batch_size=64, epochs=1.5, precision="fp32")
    train(stopped, small_real, run, generator, torch.device("cpu"), progress=False, checkpoint_path=tmp_path / "l.pt",
          stop_after_epoch=1)
    resumed = S7Net(TINY)
    train(resumed, small_real, run, seed_everything(0), torch.device("cpu"), progress=False,
          resume_from=load_resumable(tmp_path / "l.pt"))
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), model.state_dict().values()))


def test_epochs_are_said_as_a_person_says_them():
    assert [epochs_text(n) for n in (1, 1.0, 1.5, 12)] == ["1 epoch", "1 epoch", "1.5 epochs", "12 epochs"]


@pytest.mark.parametrize("epochs, steps", [(1.01, [4, 1]), (1.5, [4, 2]), (2, [4, 4]), (0.001, [1]), (1e-9, [1])])
def test_every_epoch_of_a_fractional_count_trains_at_least_one_step(small_real, epochs, steps):
    """1.01 epochs of 4 steps round to 4 steps: the second epoch would get none (and crashed). It gets one."""
    model, history = _train(small_real.subset(256, 50), epochs=epochs)
    assert [len(h["step_loss"]) for h in history] == steps and len(history) == epoch_count(Recipe(epochs=epochs))


def test_the_presets_step_counts_stay_as_they_were():
    """The rule for a fractional epoch changes no preset's schedule."""
    assert [training_steps(50_000, PRESETS[name].recipe) for name in ("tutorial", "s7net", "fast", "full")] == \
        [25_000, 485, 468, 2_400]


def test_the_command_line_finishes_a_run_of_one_and_a_hundredth_epochs(tmp_path, real_data_root):
    test_acc = main(["--quick", "--preset", "s7net", "--epochs", "1.01", "--widths", *map(str, TINY),
                     "--precision", "fp32", "--device", "cpu", "--data", str(real_data_root), "--out", str(tmp_path)])
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["test_acc"] == test_acc and [len(h["step_loss"]) for h in record["history"]] == [8, 1]
