"""Anyone's network, trained by our engine: `python -m helpers.train --net file.py[:Name]`, or
`train_network(MyNet())` in a notebook.

A student's network is a plain nn.Module written for normalised inputs (transforms.Normalize) that often ends in
log_softmax. UserNetwork makes it a helpers.models.Network: the engine's [0, 1] images are normalised first (by
default with CIFAR-10's mean and std; `none` for a network that normalises itself), and its outputs are taken as
they come, logits or log-probabilities alike (see UserNetwork); on a CPU its dropout draws its masks in bulk
(helpers.dropout). A network from a file is saved as the file's path, the entry's name and the file's sha256 beside
the weights, never as pickled code, and loads again while the file is unchanged.
"""
import hashlib
import textwrap
from argparse import ArgumentTypeError
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .checker.spec import check_s7
from .dropout import bulk_dropout_while_training
from .errors import ConfigError, first_line
from .evaluation import evaluate
from .loop import seed_everything, train
from .models import CIFAR10_MEAN, CIFAR10_STD, Network, Normalize, count_parameters, register
from .recipes import NET_RECIPE, PRESETS, Preset, Recipe, resolve
from .runtime.device import pick_device
from .start import start_run
from .submissions.load import LoadError, load_entry
from .submissions.normalization import parse_normalize

NORMALIZE_HELP = ("how the network expects its inputs: cifar (default: CIFAR-10's mean and std, as "
                  "transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)) gives), none (it takes "
                  "[0, 1] images, or normalises itself), or M1,M2,M3/S1,S2,S3")


def normalization(text: str):
    """(mean, std) for a --normalize text, None for "none" (submissions.normalization); ConfigError otherwise."""
    try:
        return parse_normalize(text)
    except ArgumentTypeError as error:
        raise ConfigError(f"--normalize {error}") from None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@register
class UserNetwork(Network):
    """A user's nn.Module (`net`) behind the normalisation it expects.

    Its output may be logits or log-probabilities: cross-entropy takes log_softmax of what it is given, and
    log_softmax of log-probabilities is the same log-probabilities (their logsumexp is log 1 = 0), so the loss is
    then exactly NLLLoss, label smoothing included; argmax, and so the accuracy, is the same for both.

    Built from `source` and `entry` (a file and the class or factory in it, checked against `sha256`), or around
    a module already built (`network`, e.g. a notebook's): such a one trains and saves, but a checkpoint cannot
    rebuild it, as no file holds its code.
    """

    def __init__(self, source: str | None = None, entry: str | None = None, sha256: str | None = None,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD, *, network: nn.Module | None = None):
        super().__init__(source=source, entry=entry, sha256=sha256, mean=None if mean is None else list(mean),
                         std=None if std is None else list(std))
        self.normalize = nn.Identity() if mean is None else Normalize(mean, std)
        self.net = network if network is not None else load_source(source, entry, sha256)

    def forward(self, x):
        with bulk_dropout_while_training(self):  # torch's own CPU dropout draws each mask one element at a time
            return self.net(self.normalize(x))

    def describe(self) -> str:
        """The wrapper in one line, for a run's first lines."""
        origin = (f"{self.model_kwargs['entry']} from {self.model_kwargs['source']}" if self.model_kwargs["source"]
                  else f"{type(self.net).__name__} (built in memory)")
        inputs = ("the [0, 1] images as they are" if isinstance(self.normalize, nn.Identity) else
                  "[0, 1] images normalised first with mean (" + ", ".join(f"{v:g}" for v in self.normalize.stats[0])
                  + ") and std (" + ", ".join(f"{v:g}" for v in self.normalize.stats[1]) + ")")
        return f"network: {origin}, {count_parameters(self):,} parameters\nit is given {inputs}"


def load_source(source: str | None, entry: str | None, sha256: str | None) -> nn.Module:
    """The network a checkpoint names by file, entry and sha256; ConfigError in one line when the file is gone or
    changed, or when no file holds the network."""
    if source is None:
        raise ConfigError("this network was built in memory (a notebook cell, say), so no file holds its code: build "
                          "it again and load the checkpoint's state_dict into UserNetwork(network=...)")
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"the network's file {source} is missing: the checkpoint needs it, unchanged")
    if file_sha256(path) != sha256:
        raise ConfigError(f"the network's file {source} changed since the checkpoint was saved (its sha256 differs): "
                          f"restore that version, or train again")
    try:
        return load_entry(f"{source}:{entry}").model
    except LoadError as error:
        raise ConfigError(str(error)) from None


def user_network(target: str, normalize: str = "cifar") -> UserNetwork:
    """The network that `file.py[:Name]` or `notebook.ipynb[:Name]` names (submissions.load_entry, the checker's
    loader: a notebook's network is built with the notebook's own arguments), wrapped, its file's path, entry and
    sha256 recorded; ConfigError in one line when it cannot be loaded or trained."""
    stats = normalization(normalize)
    try:
        loaded = load_entry(target)
    except LoadError as error:
        raise ConfigError(str(error)) from None
    wrapped = UserNetwork(str(loaded.file.resolve()), loaded.name, file_sha256(loaded.file), *(stats or (None, None)),
                          network=loaded.model)
    require_trainable_network(wrapped)
    return wrapped


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)  # BatchNorm, SyncBatchNorm, InstanceNorm


def net_recipe(network: nn.Module) -> Recipe:
    """NET_RECIPE for this network: twice its epochs for one without a norm layer. Muon scales every filter bank
    back to a fixed norm before its step, which changes nothing where a norm layer follows it; without one, it changes
    the scale of what each layer computes, and such a network learns slower (benchmarks/RESULTS.md, "Any network")."""
    if any(isinstance(module, NORM_LAYERS) for module in network.modules()):
        return NET_RECIPE
    return replace(NET_RECIPE, epochs=2 * NET_RECIPE.epochs)


PROBE_BATCH = 2


def require_trainable_network(model: UserNetwork) -> None:
    """ConfigError, in one line, unless the network has parameters and maps (N, 3, 32, 32) images to (N, 10) scores:
    checked on a batch of PROBE_BATCH before any training, in eval mode and without gradients."""
    name = type(model.net).__name__
    if not any(p.requires_grad for p in model.net.parameters()):
        raise ConfigError(f"{name} has no trainable parameters: nothing to train")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = torch.rand(PROBE_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            out = model(images.to(next(model.net.parameters()).device))
    except Exception as error:
        raise ConfigError(f"{name} cannot run on a ({PROBE_BATCH}, 3, 32, 32) batch of CIFAR-10 images: "
                          f"{type(error).__name__}: {first_line(error)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{name} returns a {type(out).__name__}, not one tensor of scores: return the (N, 10) "
                          f"logits or log-probabilities alone")
    if tuple(out.shape) != (PROBE_BATCH, 10) or not out.is_floating_point():
        raise ConfigError(f"{name} maps a ({PROBE_BATCH}, 3, 32, 32) batch to a {out.dtype} tensor of shape "
                          f"{tuple(out.shape)}, not ({PROBE_BATCH}, 10): one score per CIFAR-10 class is needed")


@dataclass
class TrainedNetwork:
    """What train_network gives back: the wrapped network, its run's recipe (precision decided) and history, its
    plain test accuracy, and the eight rule checks measured on it."""
    model: UserNetwork
    recipe: Recipe
    history: list
    test_acc: float
    checks: list


def train_network(network, data, *, normalize: str = "cifar", preset: str | None = None, quick: bool = False,
                  seed: int = 0, device=None, **overrides) -> TrainedNetwork:
    """Train anyone's network with the engine, as `helpers.train --net` does, in memory: for a notebook's network.

    network: an nn.Module, or a class or function that builds one (then built after seeding, so that the seed
    decides its initial weights too). Its recipe is net_recipe's unless `preset` names one, shrunk by quick mode,
    then `overrides` (Recipe fields) win. The checks' device row reads the device the run used.
    """
    stats = normalization(normalize)
    device = device or pick_device()
    seed_everything(seed)  # first: a class or factory builds the network from the seed, as start_run would
    built = network if isinstance(network, nn.Module) else network()
    mean, std = stats or (None, None)
    wrapped = UserNetwork(mean=mean, std=std, network=built)
    require_trainable_network(wrapped)
    run = resolve(PRESETS[preset] if preset else Preset("UserNetwork", net_recipe(built)), quick=quick, **overrides)
    recipe, generator, model, _ = start_run(run.recipe, device, seed, lambda: wrapped)
    print(model.describe())
    print(textwrap.fill(str(recipe), width=116, subsequent_indent="  "))
    history = train(model, data, recipe, generator, device)
    test_acc = evaluate(model, data.test_images, data.test_labels)
    checks = check_s7(model, test_acc, device=device, test_images=len(data.test_images))
    return TrainedNetwork(model, recipe, history, test_acc, checks)
