"""`python -m helpers.predict`: the top-3 classes of image files, and one clear line for a file that is not one."""
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.checkpoints import load_model, save_checkpoint
from helpers.data import CLASSES
from helpers.evaluation import predict
from helpers.loop import seed_everything, train
from helpers.models import S7Net
from helpers.predict import NotAnImageError, load_image, main, to_rgb, top_classes
from helpers.recipes import Recipe

LINE = re.compile(r"^(.+): (\w+) ([01]\.\d{3}), (\w+) ([01]\.\d{3}), (\w+) ([01]\.\d{3})$")


@pytest.fixture(scope="module")
def weights(real_data, tmp_path_factory):
    """A tiny S7Net trained for a moment: its predictions are not uniform, so the order means something."""
    generator = seed_everything(0)
    model = S7Net((8, 16, 32, 48))
    train(model, real_data.subset(1024, 10), replace(Recipe(), epochs=1, batch_size=64, precision="fp32"), generator,
          torch.device("cpu"), progress=False, evaluate_each_epoch=False)
    return save_checkpoint(model, tmp_path_factory.mktemp("weights") / "s7net.pt")


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


@pytest.fixture
def cifar_pngs(real_data, tmp_path):
    """The first four test images as lossless PNGs, named by index."""
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"test{i}.png")
        to_pil(real_data.test_images[i]).save(paths[-1])
    return paths


def test_a_png_of_a_cifar_image_is_that_image_and_any_image_becomes_32x32_rgb(real_data, cifar_pngs, tmp_path):
    assert torch.equal(load_image(cifar_pngs[0]), real_data.test_images[0])
    path = tmp_path / "big_grey.jpg"
    to_pil(real_data.test_images[1]).convert("L").resize((100, 80)).save(path)
    image = load_image(path)
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # grey, as RGB


def grey(image: torch.Tensor) -> np.ndarray:
    """The one channel of an image that must be grey: fails when R, G and B differ."""
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    return image[0].numpy()


def test_16_bit_pixels_are_scaled_by_65535_not_clipped(tmp_path):
    values = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (32, 1))
    values[:, 5] = 32768
    Image.fromarray(values).save(tmp_path / "deep.png")  # PIL opens it as mode I;16
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    pixels = grey(load_image(tmp_path / "deep.png"))
    assert np.array_equal(pixels, np.round(values / 65535 * 255)) and (pixels[:, 5] == 128).all()


def test_a_16_bit_pgm_opened_as_mode_i_is_scaled_by_65535(tmp_path):
    path = tmp_path / "deep.pgm"
    values = np.full((32, 32), 32768, ">u2")
    values[:, 16:] = 65535
    path.write_bytes(b"P5\n32 32\n65535\n" + values.tobytes())
    assert Image.open(path).mode == "I"
    pixels = grey(load_image(path))
    assert (pixels[:, :16] == 128).all() and (pixels[:, 16:] == 255).all()


def test_32_bit_signed_pixels_are_scaled_by_the_int32_range(tmp_path):
    values = np.zeros((32, 32), np.int32)
    values[:, :10], values[:, 20:] = -2 ** 31, 2 ** 31 - 1
    Image.fromarray(values).save(tmp_path / "deep.tif")
    pixels = grey(load_image(tmp_path / "deep.tif"))
    assert (pixels[:, :8] == 0).all() and (pixels[:, 12:18] == 128).all() and (pixels[:, 22:] == 255).all()


@pytest.mark.parametrize("low, high", [(0.0, 0.99), (-1.0, 3.0)])
def test_float_pixels_in_0_1_are_scaled_by_255_others_by_their_own_range(tmp_path, low, high):
    values = np.tile(np.linspace(low, high, 32, dtype=np.float32), (32, 1))
    Image.fromarray(values).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    scale = (0.0, 1.0) if low >= 0 else (low, high)
    expected = np.round((values.astype(np.float64) - scale[0]) / (scale[1] - scale[0]) * 255)
    assert np.array_equal(grey(load_image(tmp_path / "float.tif")), expected)


def test_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 0)  # invisible red
    rgba[:, 10:20] = (0, 0, 255, 255)  # opaque blue
    rgba[:, 20:] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba).save(tmp_path / "icon.png")
    image = load_image(tmp_path / "icon.png")
    assert image[:, :, :8].eq(255).all()
    assert image[:, :, 12:18].tolist() == [[[0] * 6] * 32, [[0] * 6] * 32, [[255] * 6] * 32]
    assert image[:, :, 22:].sub(127).abs().le(1).all()


@pytest.mark.parametrize("image, reason", [(Image.new("La", (4, 4)), "pixel mode La has no known mapping"),
                                           (Image.fromarray(np.full((4, 4), np.nan, np.float32)), "NaN")])
def test_pixels_without_a_meaning_in_rgb_are_refused_by_name(image, reason):
    with pytest.raises(NotAnImageError, match=reason):
        to_rgb(image)


def test_a_corrupt_header_is_not_an_image_error(tmp_path):
    (tmp_path / "bad.ppm").write_bytes(b"P6\n4 4x\n255\n")
    with pytest.raises(NotAnImageError, match="bad.ppm is not an image that can be read .*4x"):
        load_image(tmp_path / "bad.ppm")


def test_top_classes_are_sorted_probabilities(real_data, weights):
    tops = top_classes(load_model(weights), real_data.test_images[:8])
    for top in tops:
        names, probabilities = zip(*top)
        assert len(top) == 3 and set(names) <= set(CLASSES) and len(set(names)) == 3
        assert list(probabilities) == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert len({top[0][1] for top in tops}) > 1  # not a constant output


def test_command_line_prints_the_top_3_and_the_same_top_1_as_predict(real_data, weights, cifar_pngs, capsys):
    assert main([*map(str, cifar_pngs), "--weights", str(weights)]) == 0
    model_line, *lines = capsys.readouterr().out.splitlines()
    assert model_line == f"model {weights}: S7Net"  # a checkpoint that carries no recipe or seed says so by omission
    # No recipe in the file, so no test-time augmentation is known to go with it: the model alone.
    expected = predict(load_model(weights), real_data.test_images[:4], tta="none").argmax(1)
    assert len(lines) == 4
    for line, path, label in zip(lines, cifar_pngs, expected):
        fields = LINE.match(line).groups()
        probabilities = [float(p) for p in fields[2::2]]
        assert fields[0] == str(path) and fields[1] == CLASSES[label]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0015  # rounding


def test_a_file_that_is_not_an_image_is_named_and_the_others_are_still_predicted(weights, cifar_pngs, tmp_path,
                                                                                   capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image\n")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(cifar_pngs[1].read_bytes()[:200])
    bad_header = tmp_path / "bad.ppm"
    bad_header.write_bytes(b"P6\n4 4x\n255\n")  # PIL raises ValueError, not OSError, for this one
    status = main([str(cifar_pngs[0]), str(notes), str(truncated), str(bad_header), str(cifar_pngs[2]),
                   "--weights", str(weights)])
    out, err = capsys.readouterr()
    assert status == 2
    assert [line.split(":")[0] for line in out.splitlines()[1:]] == [str(cifar_pngs[0]), str(cifar_pngs[2])]
    errors = err.splitlines()
    assert len(errors) == 3 and "Traceback" not in err
    for line, path in zip(errors, (notes, truncated, bad_header)):
        assert line.startswith(f"python -m helpers.predict: error: {path} is not an image")
    with pytest.raises(NotAnImageError, match="notes.png is not an image"):
        load_image(notes)


def test_missing_weights_are_one_clear_error(cifar_pngs, tmp_path, capsys):
    assert main([str(cifar_pngs[0]), "--weights", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err == f"python -m helpers.predict: error: checkpoint {tmp_path / 'none.pt'} " \
                                      f"does not exist\n"


def test_weights_whose_recipe_this_version_cannot_run_are_one_clear_error(weights, cifar_pngs, tmp_path, capsys):
    checkpoint = torch.load(weights, weights_only=True)
    torch.save({**checkpoint, "recipe": {"epochs": 1, "turbo": True}}, tmp_path / "odd.pt")
    assert main([str(cifar_pngs[0]), "--weights", str(tmp_path / "odd.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a recipe this version cannot run: unknown recipe field(s) turbo" in err


def test_the_module_runs_and_exits_with_status_2_on_a_bad_file(weights, cifar_pngs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    result = subprocess.run([sys.executable, "-m", "helpers.predict", str(cifar_pngs[0]), str(notes),
                             "--weights", str(weights)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert LINE.match(result.stdout.splitlines()[-1]) and result.stderr.count("\n") == 1


# --- found by trying to break it, fourth round ----------------------------------------------------------------

def edited(weights, tmp_path, **changes) -> str:
    """The checkpoint with some of its parts changed, as someone editing it by hand would."""
    checkpoint = torch.load(weights, weights_only=True)
    for key, change in changes.items():
        checkpoint[key] = change(checkpoint[key]) if callable(change) else change
    torch.save(checkpoint, tmp_path / "edited.pt")
    return str(tmp_path / "edited.pt")


def nan_in_the_head(state):
    head = state["output.2.weight"].clone()
    head[0, 0] = float("nan")
    return {**state, "output.2.weight": head}


@pytest.mark.parametrize("changes, message", [
    ({"state_dict": nan_in_the_head}, "its weights hold NaN or infinity (output.2.weight): not a model to use"),
    ({"test_acc": "high"}, "carries values of the wrong kind: test_acc 'high'"),
    ({"model_kwargs": {"widths": [1000000, 64, 64, 64], "num_classes": 10, "dilation": 2}},
     "S7Net with {'widths': [1000000, 64, 64, 64], 'num_classes': 10, 'dilation': 2} would have 605,121,354 "
     "parameters"),
    ({"model_kwargs": {"widths": [1e6, 16, 32, 48], "num_classes": 10, "dilation": 2}},
     "widths must be four positive whole numbers, not [1000000.0, 16, 32, 48]"),
    ({"model_kwargs": {"widths": [8, 16, 32, 48], "num_classes": 10, "dilation": 0}},
     "dilation must be a positive whole number, not 0"),
    ({"model_kwargs": {"widths": [8, 16, 32, 64], "num_classes": 10, "dilation": 2}},
     "size mismatch for c4.0.0.weight: copying a param with shape torch.Size([48, 32, 3, 3]) from checkpoint"),
])
def test_weights_that_cannot_predict_are_one_line_saying_why(weights, cifar_pngs, tmp_path, capsys, changes, message):
    assert main([str(cifar_pngs[0]), "--weights", edited(weights, tmp_path, **changes)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("python -m helpers.predict: error: ") and message in err
    assert out == ""  # no prediction printed from such weights


# --- found by trying to break it, fifth round -----------------------------------------------------------------

def test_a_fifo_for_an_image_or_the_weights_is_refused_without_waiting_for_a_writer(weights, cifar_pngs, tmp_path):
    """Opening a FIFO blocks until something writes into it: a FIFO given as a file must be refused, not opened."""
    os.mkfifo(tmp_path / "fifo.png")
    command = [sys.executable, "-m", "helpers.predict", str(cifar_pngs[0]), str(tmp_path / "fifo.png"), "--weights"]
    result = subprocess.run(command + [str(weights)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and LINE.match(result.stdout.splitlines()[-1]).group(1) == str(cifar_pngs[0])
    assert result.stderr == f"python -m helpers.predict: error: {tmp_path / 'fifo.png'} is not a regular file\n"
    result = subprocess.run(command + [str(tmp_path / "fifo.png")], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"python -m helpers.predict: error: checkpoint {tmp_path / 'fifo.png'} is not a " \
                            f"regular file\n"


@pytest.mark.parametrize("change", [lambda t: t * 1e30, lambda t: t.long()], ids=["times 1e30", "int64"])
def test_finite_weights_whose_outputs_are_not_finite_print_no_probabilities(weights, cifar_pngs, tmp_path, capsys,
                                                                          change):
    scaled = edited(weights, tmp_path, state_dict=lambda state: {k: change(v) if v.is_floating_point() else v
                                                                 for k, v in state.items()})
    assert main([str(p) for p in cifar_pngs] + ["--weights", scaled]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("model ") and out.count("\n") == 1  # the model's line, and no probability
    assert err == "python -m helpers.predict: error: the network's outputs are NaN or infinite for 4 of 4 images " \
                  "(weights that overflow?): no class can be read from them\n"
