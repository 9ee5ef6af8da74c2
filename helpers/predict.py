"""The likeliest CIFAR-10 classes of image files: `python -m helpers.predict IMAGE [IMAGE ...] --weights PATH`.

Any image PIL reads becomes what the network trained on: RGB, 32x32, uint8 (the model scales and normalises).
"""
import argparse
import sys

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from .data import CLASSES
from .train import CheckpointError, load_model, predict

PROG = "python -m helpers.predict"


class NotAnImageError(ValueError):
    """A file that PIL cannot read as an image."""


def load_image(path) -> torch.Tensor:
    """uint8 (3, 32, 32), like a CIFAR-10 image: converted to RGB, resized (bicubic, antialiased) to 32x32.

    Whatever reading the file raises (PIL raises OSError, ValueError, SyntaxError... for a bad file) becomes
    NotAnImageError naming it, so one bad file cannot stop the others being predicted.
    """
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise NotAnImageError(f"{path} is not an image that can be read ({reason})") from error
    return pil_to_tensor(rgb)


def top_classes(model, images: torch.Tensor, k: int = 3, tta: bool = True) -> list[list[tuple[str, float]]]:
    """For each uint8 image, the k likeliest classes with their probabilities, likeliest first."""
    probabilities, indices = predict(model, images, tta=tta).softmax(1).topk(k)
    return [[(CLASSES[i], p) for i, p in zip(row_indices.tolist(), row_probabilities.tolist())]
            for row_probabilities, row_indices in zip(probabilities, indices)]


def complain(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Print `IMAGE: class p, class p, class p` for each image; status 2 when any file could not be used."""
    parser = argparse.ArgumentParser(prog=PROG, description="The three likeliest CIFAR-10 classes of each image, "
                                                            "with their probabilities.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="an image file of any format PIL reads")
    parser.add_argument("--weights", default="runs/latest/s7net.pt",
                        help="checkpoint written by helpers.train (default %(default)s)")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="do not average with the mirrored image (the accuracy training reports uses it)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.weights)
    except CheckpointError as error:
        complain(str(error))
        return 2
    paths, images = [], []
    for path in args.images:
        try:
            images.append(load_image(path))
            paths.append(path)
        except NotAnImageError as error:
            complain(str(error))
    if images:
        for path, top in zip(paths, top_classes(model, torch.stack(images), tta=args.tta)):
            print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in top))
    return 0 if len(images) == len(args.images) else 2


if __name__ == "__main__":
    sys.exit(main())
