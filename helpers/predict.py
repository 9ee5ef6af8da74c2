"""The likeliest CIFAR-10 classes of image files: `python -m helpers.predict IMAGE [IMAGE ...] --weights PATH`.

Any image PIL reads becomes what the network trained on: RGB, 32x32, uint8 (the model scales and normalises).
16-bit, 32-bit and float pixels are scaled to 0-255, transparent ones composited on white.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from .checkpoints import CheckpointError, load_checkpoint, provenance, rebuild_model, reported_tta, weights_path
from .data import CLASSES
from .evaluation import predict

PROG = "python -m helpers.predict"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / weights_path("full", 0)


# Modes that PIL's convert("RGB") maps faithfully; it clips deeper integer and float modes, so we scale those.
CONVERTED_MODES = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa"}


class NotAnImageError(ValueError):
    """A file that PIL cannot read as an image, or whose pixels have no known mapping to 8-bit RGB."""


class NonFiniteOutputError(ValueError):
    """The network gave NaN or infinite logits: finite weights can still overflow, and NaN has no likeliest class."""


def load_image(path) -> torch.Tensor:
    """uint8 (3, 32, 32), like a CIFAR-10 image: made 8-bit RGB, resized (bicubic, antialiased) to 32x32.

    Whatever reading the file raises (PIL raises OSError, ValueError, SyntaxError... for a bad file) becomes
    NotAnImageError naming it, so one bad file cannot stop the others being predicted. A FIFO or a device is
    refused before it is opened: opening one can wait forever for a writer.
    """
    if Path(path).exists() and not Path(path).is_file():
        raise NotAnImageError(f"{path} is not a regular file")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image).resize((32, 32), Image.Resampling.BICUBIC)
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise NotAnImageError(f"{path} is not an image that can be read ({reason})") from error
    return pil_to_tensor(rgb)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode PIL opens; transparent pixels are composited on white, as on a page."""
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_grey_to_uint8(image)).convert("RGB")
    if image.mode in ALPHA_MODES or (image.mode in CONVERTED_MODES and "transparency" in image.info):
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    if image.mode in CONVERTED_MODES:
        return image.convert("RGB")
    raise NotAnImageError(f"its pixel mode {image.mode} has no known mapping to 8-bit RGB")


def _grey_to_uint8(image: Image.Image) -> np.ndarray:
    """Integer pixels scaled by their type's range; float ones by [0, 1] when they lie in it, else their own."""
    values = np.asarray(image).astype(np.float64)
    if image.mode != "F":
        low, high = _integer_range(image, values)
    elif not np.isfinite(values).all():
        raise NotAnImageError("its float pixels include NaN or infinity")
    elif values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = values.min(), values.max()
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _integer_range(image: Image.Image, values: np.ndarray) -> tuple[int, int]:
    """The pixels' type range: bits and sign as the mode or a TIFF's tags say, else guessed from the values.

    PIL opens 16-bit PGMs and 32-bit TIFFs as mode I without saying how deep the data is: values that fit in
    0-65535 are taken as 16-bit, others as 32-bit.
    """
    tags = getattr(image, "tag_v2", {})  # TIFF: 258 BitsPerSample, 339 SampleFormat (2 is signed)
    if image.mode.startswith("I;16"):
        bits = 16
    elif 258 in tags:
        bits = tags[258][0]
    else:
        bits = 16 if values.min() >= 0 and values.max() < 2 ** 16 else 32
    signed = tags[339][0] == 2 if 339 in tags else values.min() < 0
    return (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def top_classes(model, images: torch.Tensor, k: int = 3, tta: str = "flip") -> list[list[tuple[str, float]]]:
    """For each uint8 image, the k likeliest classes with their probabilities, likeliest first."""
    logits = predict(model, images, tta=tta)
    broken = (~logits.isfinite().all(1)).sum().item()
    if broken:
        raise NonFiniteOutputError(f"the network's outputs are NaN or infinite for {broken} of {len(logits)} images "
                                   f"(weights that overflow?): no class can be read from them")
    probabilities, indices = logits.softmax(1).topk(k)
    return [[(CLASSES[i], p) for i, p in zip(row_indices.tolist(), row_probabilities.tolist())]
            for row_probabilities, row_indices in zip(probabilities, indices)]


def print_error(message: str) -> None:
    """A file that could not be used, in the form of an argparse error; the other images are still predicted."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Print `IMAGE: class p, class p, class p` for each image; status 2 when any file could not be used."""
    parser = argparse.ArgumentParser(prog=PROG, description="The three likeliest CIFAR-10 classes of each image, "
                                                            "with their probabilities.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="an image file of any format PIL reads")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                        help="checkpoint written by helpers.train (default: the committed S7AirNet, %(default)s)")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="no test-time augmentation (by default the one the model's recipe reports with: the "
                             "mirror, and for the presets one-pixel shifts too)")
    args = parser.parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.weights)
        model = rebuild_model(checkpoint, args.weights).eval()
    except CheckpointError as error:
        print_error(str(error))
        return 2
    print(f"model {args.weights}: {provenance(checkpoint)}")
    paths, images = [], []
    for path in args.images:
        try:
            images.append(load_image(path))
            paths.append(path)
        except NotAnImageError as error:
            print_error(str(error))
    if images:
        try:
            tops = top_classes(model, torch.stack(images), tta=reported_tta(checkpoint) if args.tta else "none")
        except NonFiniteOutputError as error:
            print_error(str(error))
            return 2
        for path, top in zip(paths, tops):
            print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in top))
    return 0 if len(images) == len(args.images) else 2


if __name__ == "__main__":
    sys.exit(main())
