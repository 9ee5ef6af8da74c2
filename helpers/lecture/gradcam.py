"""Grad-CAM (Selvaraju et al. 2017): where in an image a network found its evidence for a class.

A late convolution block's channels still know where things are; the gradient of a class logit says how much
each channel counts for that class. Their weighted sum, kept where positive, is a coarse map of the evidence.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from ..evaluation import most_confident_mistakes
from .plots import overlay, show_image
from .probes import as_input, layer_name, output_size, probe_copy, recorded_outputs


def grad_cam(model: nn.Module, images, target_classes, layer="c3") -> torch.Tensor:
    """(N, H, W) maps in [0, 1]: the evidence in each image for its target class, at the input's size.

    layer: the module, or its name, whose output map is explained (a C1C2C3C4O network's c3 by default: 8x8 in
    S7Net, 7x7 in S7AirNet, where c4's 4x4 or 3x3 would paint the whole image). Each
    channel k of its output A is weighted by the mean over positions of d logit / d A_k; the weighted sum goes
    through a ReLU (only evidence for the class), is upsampled bilinearly to the image and divided by its peak
    (a map with no positive evidence stays 0). Computed on a float32 CPU eval copy: the model is not changed.
    """
    net, name = probe_copy(model), layer_name(model, layer)
    x = as_input(images).requires_grad_(True)  # builds the graph; no parameter of the copy needs a gradient
    with recorded_outputs(net, [name]) as outputs:
        logits = net(x)
    activations = outputs[name]
    targets = torch.as_tensor(target_classes).long().cpu().reshape(-1, 1)
    gradients, = torch.autograd.grad(logits.gather(1, targets).sum(), activations)
    maps = F.relu((gradients.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True))
    maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()
    return maps / maps.amax((1, 2), keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)  # 0 stays 0


class MistakeMaps(NamedTuple):
    """The most confident mistakes and Grad-CAM's maps for them: what the figure draws and the reading reads."""
    indices: torch.Tensor  # into the test set, most confident first
    predicted: torch.Tensor  # every image's predicted class, and its confidence
    confidence: torch.Tensor
    images: torch.Tensor  # the mistakes' images, float (N, 3, H, W)
    chosen: torch.Tensor  # (N, H, W): the evidence for the predicted class
    true: torch.Tensor  # (N, H, W): the evidence for the true class
    layer: str
    size: tuple  # the explained layer's map, (height, width), before upsampling


def mistake_maps(model: nn.Module, images, labels, logits, count: int = 6, layer="c3") -> MistakeMaps:
    """Grad-CAM of the predicted and of the true class for the `count` most confident mistakes (the ones
    misclassified_gallery shows). images, labels: the test set; logits: the model's on it (evaluation.predict)."""
    wrong, predicted, confidence = most_confident_mistakes(labels, logits, count)
    labels = torch.as_tensor(labels).cpu()
    chosen = as_input(images[wrong.to(images.device)])
    maps = grad_cam(model, torch.cat([chosen, chosen]), torch.cat([predicted[wrong], labels[wrong]]), layer) \
        if len(wrong) else torch.zeros(0, *chosen.shape[-2:])
    name = layer_name(model, layer)
    return MistakeMaps(wrong, predicted, confidence, chosen, maps[:len(wrong)], maps[len(wrong):], name,
                       output_size(model, name, chosen.shape[1:]))


def evidence_summary(found: MistakeMaps) -> dict:
    """What the maps show, in numbers: how many of the chosen and of the true class's maps hold any evidence; the
    mean share of a map's weight in the middle quarter of the image (rows and columns from a quarter to three
    quarters: 25% for an even map), over the maps that hold some; and over the mistakes where both maps do, the
    mean weight they share (the sum of the smaller of the two, each scaled to sum 1: 100% for the same map, 0 for
    disjoint ones). A share over no map is None."""
    height, width = found.chosen.shape[-2:]
    middle = (slice(None), slice(height // 4, height - height // 4), slice(width // 4, width - width // 4))
    held = {role: maps.flatten(1).sum(1) > 0 for role, maps in (("chosen", found.chosen), ("true", found.true))}

    def centre_share(maps, kept):
        return 100 * (maps[kept][middle].sum((1, 2)) / maps[kept].sum((1, 2))).mean().item() if kept.any() else None

    both = held["chosen"] & held["true"]
    chosen, true = (m[both].flatten(1) / m[both].flatten(1).sum(1, keepdim=True) for m in (found.chosen, found.true))
    return {"shown": len(found.indices), "with evidence, chosen": int(held["chosen"].sum()),
            "with evidence, true": int(held["true"].sum()), "both": int(both.sum()),
            "centre, chosen": centre_share(found.chosen, held["chosen"]),
            "centre, true": centre_share(found.true, held["true"]),
            "shared": 100 * torch.minimum(chosen, true).sum(1).mean().item() if both.any() else None}


def gradcam_mistakes_figure(found: MistakeMaps, labels, classes, per_row: int = 2) -> Figure:
    """Each mistake as its image titled "true -> predicted (p)", then Grad-CAM of the predicted and of the true
    class over it: what the network saw for the class it chose, and for the one it missed."""
    labels = torch.as_tensor(labels).cpu()
    rows = max(1, -(-len(found.indices) // per_row))
    fig = Figure(figsize=(per_row * 3 * 1.25 + 0.9, rows * 1.55 + 0.5), layout="constrained")
    axes = fig.subplots(rows, 3 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, i in enumerate(found.indices.tolist()):
        image_ax, predicted_ax, true_ax = axes[n // per_row, 3 * (n % per_row):3 * (n % per_row) + 3]
        predicted = found.predicted[i]
        show_image(image_ax, found.images[n], f"{classes[labels[i]]} -> {classes[predicted]}\n"
                                              f"(p {found.confidence[i]:.2f})", color="crimson")
        for ax, heat, name, role in ((predicted_ax, found.chosen[n], classes[predicted], "chosen"),
                                     (true_ax, found.true[n], classes[labels[i]], "true")):
            artist = overlay(ax, found.images[n], heat, smooth=True)
            ax.set_title(f"for {name}\n({role}){'' if heat.any() else ': no evidence'}", fontsize=8)
    if len(found.indices):
        fig.colorbar(artist, ax=axes, shrink=0.6).set_label("Grad-CAM, share of the map's peak", fontsize=8)
    fig.suptitle(f"Grad-CAM at {found.layer} ({found.size[0]}x{found.size[1]} map, bilinear to the image): the "
                 f"{len(found.indices)} most confident mistakes", fontsize=10)
    return fig
