"""The S7 networks described in words, read from their modules and recipes: a table of blocks with the rule each
one's layers serve, and S7AirNet's ideas beyond S7Net, each with its reason and its source. Nothing here judges a
rule (helpers.checker.spec does): it says where to look."""
from fractions import Fraction

import inspect

import torch
from torch import nn

from ..convs import DepthwiseSeparableConv2d
from ..models import GlobalAvgPool2d, PatchWhitening, ScaledLinear, ShiftBatchNorm2d, build_model, count_macs
from ..recipes import PRESETS
from .erf import rf_squares
from .probes import probe_copy, recorded_outputs

AIRBENCH = "[airbench](https://github.com/KellerJordan/cifar10-airbench)"
MUON = "[Muon write-up](https://kellerjordan.github.io/posts/muon/), airbench94_muon"


def layer_words(module: nn.Module) -> list[str]:
    """The layers of a block, each in a few words, in the order they run."""
    k = getattr(module, "kernel_size", None)
    k = k[0] if isinstance(k, tuple) else k
    if isinstance(module, PatchWhitening):
        return [f"{k}x{k} whitening conv (frozen)"]
    if isinstance(module, DepthwiseSeparableConv2d):
        d = module.depthwise.kernel_size[0]
        return [f"depthwise-separable conv ({d}x{d} depthwise + 1x1 pointwise)"]
    if isinstance(module, nn.Conv2d):
        dilation = f", dilation {module.dilation[0]}" if module.dilation[0] > 1 else ""
        depthwise = " depthwise" if module.groups == module.in_channels > 1 else ""
        return [f"{k}x{k}{depthwise} conv{dilation}"]
    if isinstance(module, nn.BatchNorm2d):
        return ["BN (shift only)" if isinstance(module, ShiftBatchNorm2d) else "BN"]
    if isinstance(module, nn.MaxPool2d):
        return [f"{k}x{k} max-pool"]
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return ["global average pool"]
    if isinstance(module, nn.Linear):
        scale = f", output x {Fraction(module.scale).limit_denominator(100)}" if isinstance(module, ScaledLinear) \
            else ""
        return [f"linear {module.in_features} -> {module.out_features}{scale}"]
    if isinstance(module, nn.Flatten):
        return []
    if not any(module.children()):
        return [type(module).__name__]
    return [words for child in module.children() for words in layer_words(child)]


def rule_served(module: nn.Module, pools_before: int) -> str:
    """The S7 rule a top-level block's layers serve, in words (empty when none)."""
    parts = list(module.modules())
    if isinstance(module, nn.MaxPool2d):
        return f"max-pool {pools_before + 1} of 3"
    rules = ["depthwise-separable" for m in parts if isinstance(m, DepthwiseSeparableConv2d)][:1]
    rules += ["dilated" for m in parts if isinstance(m, nn.Conv2d) and m.dilation[0] > 1 and m.kernel_size[0] > 1][:1]
    rules += ["global average pooling" for m in parts if isinstance(m, (GlobalAvgPool2d, nn.AdaptiveAvgPool2d))][:1]
    return ", ".join(rules)


def block_table(model: nn.Module, input_shape=(3, 32, 32)) -> list[dict]:
    """One row per block of a C1C2C3C4O network (its pools included): the map's size and channels in and out, its
    layers, its parameters, its multiply-adds on one image, the receptive field at its end, and the rule it
    serves."""
    net = probe_copy(model)  # eval mode on the CPU; the caller's model keeps its mode and device
    blocks = [(name, child) for name, child in net.named_children() if name != "normalize"]
    with recorded_outputs(net, [name for name, _ in blocks]) as outputs, torch.no_grad():
        net(torch.zeros(1, *input_shape))
    shapes, previous = {}, (1, *input_shape)
    for name, _ in blocks:
        shapes[name], previous = (previous, outputs[name].shape), outputs[name].shape
    fields = rf_squares(model, [name for name, _ in blocks if name.startswith("c")], input_shape)
    rows, pools = [], 0
    for name, child in blocks:
        (_, c_in, *size_in), (_, c_out, *size_out) = (list(s) for s in shapes[name])
        rows.append({"block": name, "size": f"{'x'.join(map(str, size_in))} -> {'x'.join(map(str, size_out)) or '1'}",
                     "channels": f"{c_in} -> {c_out}", "layers": ", ".join(layer_words(child)),
                     "params": f"{sum(p.numel() for p in child.parameters()):,}",
                     "MACs": f"{count_macs(child, shapes[name][0][1:]):,}",
                     "RF at its end": f"{fields[name].side} px" if name in fields else "",
                     "rule it serves": rule_served(child, pools)})
        pools += isinstance(child, nn.MaxPool2d)
    return rows


def network_source(model: nn.Module) -> str:
    """The code of a helpers network as it runs: its class, the helpers classes it inherits from (up to Network),
    then the class of each helpers module inside it, each once, in the order they first appear."""
    from ..models import Network  # the base every helpers network shares: its code is not this network's
    mine = [cls for cls in type(model).__mro__ if cls.__module__.startswith("helpers.") and issubclass(cls, Network)
            and cls is not Network]
    parts = [type(m) for m in model.modules() if type(m).__module__.startswith("helpers.")]
    return "\n\n".join(inspect.getsource(cls).rstrip() for cls in dict.fromkeys(mine + parts))


def markdown_table(rows: list[dict]) -> str:
    """rows as a Markdown table (for display(Markdown(...))), the keys as its header."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows])


def _identity_convs(model: nn.Module) -> int:
    """Convolutions whose first in_channels filters are a Dirac kernel: identity-initialised ones."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module, PatchWhitening) and module.groups == 1 \
                and module.kernel_size[0] > 1 and module.out_channels >= module.in_channels:
            dirac = nn.init.dirac_(torch.empty_like(module.weight[:module.in_channels]))
            count += torch.equal(module.weight[:module.in_channels], dirac)
    return count


TTA_WORDS = {"flip": "predictions average the image and its mirror",
             "flip-translate": "predictions average the image, its mirror and one-pixel shifts of both"}


def airnet_ideas(preset: str, base: str = "s7net") -> list[dict]:
    """The ideas the preset's network and recipe hold that `base`'s do not, each with what it is here, why, and its
    source, read from a freshly built network and the recipes: a preset without one gets no line for it."""
    model = build_model(PRESETS[preset].architecture, **PRESETS[preset].model_kwargs)
    recipe, other = PRESETS[preset].recipe, PRESETS[base].recipe
    kinds = {type(m) for m in model.modules()}
    ideas = []  # (idea, what it is in this network, why, source)
    for m in model.modules():
        if isinstance(m, PatchWhitening):
            ideas.append(("patch whitening", f"C1 opens with a frozen {m.kernel_size[0]}x{m.kernel_size[1]} conv whose "
                          f"{m.out_channels} filters whiten the image's patches, set from the training images",
                          "the first layer starts from decorrelated inputs of unit variance instead of learning that",
                          f"{AIRBENCH}, after [hlb-CIFAR10](https://github.com/tysam-code/hlb-CIFAR10)"))
    if _identity_convs(model):
        ideas.append(("identity initialisation", f"{_identity_convs(model)} of its convs start with their first "
                      f"filters as the identity (a Dirac kernel: those outputs copy the inputs)", "the signal passes "
                      "the untrained network, so every layer learns from the first step", AIRBENCH))
    if ShiftBatchNorm2d in kinds:
        ideas.append(("shift-only BatchNorm", "BatchNorm's scale stays 1; only its shift learns",
                      "the next conv's weights can scale instead, so the scale is redundant", AIRBENCH))
    if nn.GELU in kinds:
        ideas.append(("GELU", "the activation x·Φ(x), Φ the Gaussian distribution function: a smooth ReLU",
                      "its gradient does not jump at 0", AIRBENCH))
    if isinstance(getattr(model, "c2", [None])[0], nn.BatchNorm2d):
        ideas.append(("normalise after the pool", "each block ends with its widest conv, the max-pool follows at "
                      "once, and BatchNorm and GELU open the next block", "they then run on a quarter of the "
                      "positions", AIRBENCH))
    for m in model.modules():
        if isinstance(m, ScaledLinear):
            ideas.append(("scaled output", f"the linear layer has no bias and its output is multiplied by "
                          f"{Fraction(m.scale).limit_denominator(100)}", "small logits at the start", AIRBENCH))
    if recipe.muon_lr is not None and other.muon_lr is None:
        ideas.append(("Muon", f"the optimiser of the filter banks (peak learning rate {recipe.muon_lr:g}): momentum "
                      f"with its directions evened out (orthogonalised)", "it learns in fewer epochs than SGD", MUON))
    if recipe.bias_lr_scale != other.bias_lr_scale:
        ideas.append(("fast BatchNorm shifts", f"the BatchNorm shifts learn at {recipe.bias_lr_scale:g} times the "
                      f"learning rate", "they are few and want far larger steps", AIRBENCH))
    if recipe.alternate_flip and not other.alternate_flip:
        ideas.append(("alternating flips", "image i is mirrored in epoch e when i + e is odd", "every image is seen "
                      "both ways in any two epochs, not by chance", AIRBENCH))
    if recipe.tta != other.tta and recipe.tta in TTA_WORDS:
        ideas.append((f"TTA {recipe.tta}", TTA_WORDS[recipe.tta], "the views it trained on, averaged, predict better "
                      "than one", AIRBENCH))
    return [{"idea": idea, f"in S7AirNet ({preset})": what, "why": why, "source": source}
            for idea, what, why, source in ideas]
