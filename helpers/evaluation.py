"""Evaluation: logits, accuracy and test-time augmentation (TTA), always in eval mode and full fp32.

TTA averages the logits of several views of each test image: "flip" the image and its mirror; "flip-translate"
(airbench's) gives that pair half the weight and the other half to both views shifted by one pixel up-left and
down-right (reflect padding), each with its mirror. The network sees views it was trained on (flips, shifts).
"""
import torch
import torch.nn.functional as F

from .data import model_input
from .runtime.precision import exact_fp32


@torch.no_grad()
def predict(model, images, tta: str = "none", batch_size: int = 1000):
    """Logits (float32, on the CPU) for images, uint8 [0, 255] or float [0, 1], with the test-time augmentation
    `tta` (see above)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with exact_fp32(device):
        for start in range(0, len(images), batch_size):
            out.append(augmented_logits(model, model_input(images[start:start + batch_size].to(device)), tta).cpu())
    return torch.cat(out)


def augmented_logits(model, x, tta: str):
    """The mean logits of the TTA views of the float images x."""
    if tta == "none":
        return model(x).float()
    flip = (model(x).float() + model(x.flip(-1)).float()) / 2
    if tta == "flip":
        return flip
    if tta != "flip-translate":
        raise ValueError(f"unknown test-time augmentation {tta!r}")
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = (padded[..., :-2, :-2], padded[..., 2:, 2:])
    translated = sum(model(v).float() + model(v.flip(-1)).float() for v in shifted) / 4
    return (flip + translated) / 2


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    return 100 * (logits.argmax(1) == labels.cpu()).float().mean().item()


def evaluate(model, images, labels, tta: str = "none") -> float:
    """Top-1 accuracy in percent of `model` on uint8 images."""
    return accuracy(predict(model, images, tta), labels)


def confusion_matrix(labels, predicted, num_classes: int = 10):
    """counts[true, predicted] as an int64 tensor."""
    index = labels.cpu() * num_classes + predicted.cpu()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def most_confident_mistakes(labels, logits, count: int):
    """(indices of at most `count` wrong predictions, most confident first; every predicted class; every confidence):
    the mistakes a reader learns most from, the same ones in every figure that shows them."""
    confidence, predicted = logits.softmax(1).max(1)
    wrong = torch.nonzero(predicted != labels.cpu()).flatten()
    return wrong[confidence[wrong].argsort(descending=True)][:count], predicted, confidence
