"""Evaluation: logits, accuracy, and flip test-time augmentation, always in eval mode and full fp32."""
import torch

from .data import to_float
from .precision import exact_fp32


@torch.no_grad()
def predict(model, images, tta: bool = False, batch_size: int = 1000):
    """Logits (float32, on the CPU) for uint8 images; TTA averages each image's logits with its mirror's."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with exact_fp32(device):
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(device))
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
            out.append(logits.cpu())
    return torch.cat(out)


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    return 100 * (logits.argmax(1) == labels.cpu()).float().mean().item()


def evaluate(model, images, labels, tta: bool = False) -> float:
    """Top-1 accuracy in percent of `model` on uint8 images."""
    return accuracy(predict(model, images, tta), labels)
