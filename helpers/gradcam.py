"""Grad-CAM (Selvaraju et al. 2017): where in an image a network found its evidence for a class.

The last convolution block's channels still know where things are; the gradient of a class logit says how much
each channel counts for that class. Their weighted sum, kept where positive, is a coarse map of the evidence.
"""
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .evaluation import most_confident_mistakes
from .plots import overlay, show_image
from .probes import as_input, layer_name, probe_copy, recorded_outputs


def grad_cam(model: nn.Module, images, target_classes, layer="c4") -> torch.Tensor:
    """(N, H, W) maps in [0, 1]: the evidence in each image for its target class, at the input's size.

    layer: the module, or its name, whose output map is explained (a C1C2C3C4O network's c4 by default). Each
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


def gradcam_mistakes_figure(model: nn.Module, images, labels, logits, classes, count: int = 6, layer="c4",
                            per_row: int = 2) -> Figure:
    """The most confident mistakes (the ones misclassified_gallery shows), each as its image titled "true ->
    predicted (p)", then Grad-CAM of the predicted class and of the true class over it: what the network saw for
    the class it chose, and for the one it missed.

    images, labels: the test set (uint8 or float images); logits: the model's on it (evaluation.predict).
    """
    wrong, predicted, confidence = most_confident_mistakes(labels, logits, count)
    labels = torch.as_tensor(labels).cpu()
    rows = max(1, -(-len(wrong) // per_row))
    fig = Figure(figsize=(per_row * 3 * 1.3 + 1, rows * 1.6 + 0.4), layout="constrained")
    axes = fig.subplots(rows, 3 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if len(wrong):
        chosen = as_input(images[wrong.to(images.device)])
        maps = grad_cam(model, torch.cat([chosen, chosen]), torch.cat([predicted[wrong], labels[wrong]]), layer)
        for n, i in enumerate(wrong.tolist()):
            image_ax, predicted_ax, true_ax = axes[n // per_row, 3 * (n % per_row):3 * (n % per_row) + 3]
            show_image(image_ax, chosen[n], f"{classes[labels[i]]} -> {classes[predicted[i]]} ({confidence[i]:.2f})",
                       color="crimson")
            for ax, heat, name, role in ((predicted_ax, maps[n], classes[predicted[i]], "chosen"),
                                         (true_ax, maps[len(wrong) + n], classes[labels[i]], "true")):
                artist = overlay(ax, chosen[n], heat)
                ax.set_title(f"for {name} ({role}){'' if heat.any() else ': none'}", fontsize=8)
        fig.colorbar(artist, ax=axes, shrink=0.6, label="Grad-CAM, share of the map's peak")
    fig.suptitle(f"Grad-CAM at {layer_name(model, layer) or 'the model'}: the {len(wrong)} most confident mistakes, "
                 f"evidence for the predicted and the true class", fontsize=10)
    return fig
