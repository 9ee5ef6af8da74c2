"""Time to accuracy of a training preset: one JSON object per seed, then a summary line.

    python benchmarks/time_to_accuracy.py --seeds 0 1 2 [--preset fast] [--epochs N] [--data ROOT] [--save DIR]
                                          [--compare]

train_seconds is the training wall time (data already in memory, test evaluations not counted);
test_acc is the recipe's own evaluation (flip TTA when the recipe says so), test_acc_plain is without TTA.
--compare adds the throughput of a tutorial-style pipeline (torchvision DataLoader, PIL transforms per image,
fp32) on the same network, measured in the same run, and the ratio.
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.data import load_cifar10, steps_per_epoch, train_batches  # noqa: E402
from helpers.device import pick_device  # noqa: E402
from helpers.models import CIFAR10_MEAN, CIFAR10_STD, build_model, count_parameters  # noqa: E402
from helpers.train import PRESETS, evaluate, positive_int, quick, save_checkpoint, seed_everything, train  # noqa: E402


def run_seed(data, recipe, seed: int, device, save_dir=None) -> dict:
    generator = seed_everything(seed)
    model = build_model(recipe.architecture)
    history = train(model, data, recipe, generator, device, progress=False, evaluate_each_epoch=False)
    seconds = sum(h["seconds"] for h in history)
    images = recipe.epochs * steps_per_epoch(len(data.train_images), recipe.batch_size) * recipe.batch_size
    result = {"seed": seed, "device": str(device), "architecture": recipe.architecture,
              "params": count_parameters(model), "epochs": recipe.epochs,
              "train_seconds": round(seconds, 2), "images_per_second": round(images / seconds, 1),
              "test_acc": round(evaluate(model, data.test_images, data.test_labels, tta=recipe.tta), 2),
              "test_acc_plain": round(evaluate(model, data.test_images, data.test_labels), 2)}
    if save_dir is not None:
        result["checkpoint"] = str(save_checkpoint(model, Path(save_dir) / f"seed{seed}.pt"))
    return result


class TutorialStyleDataset(torch.utils.data.Dataset):
    """What most solutions do: a PIL image per sample, torchvision transforms, ToTensor and Normalize."""

    def __init__(self, images, labels):
        import torchvision.transforms as T
        self.images, self.labels = images.permute(0, 2, 3, 1).numpy(), labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def images_per_second(model, batches, steps: int, bf16: bool, device) -> float:
    """Training throughput over `steps` batches after one warm-up step (the batches' making included)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == 1:
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y) if i >= 1 else 0
        if i == steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def compare_pipelines(data, recipe, device, steps: int = 30) -> dict:
    """Ours (the recipe's batches and precision) versus the tutorial style, on fresh copies of the same network."""
    seed_everything(0)
    layout = torch.channels_last if recipe.channels_last else torch.contiguous_format
    ours_model = build_model(recipe.architecture).to(device).to(memory_format=layout)
    ours = images_per_second(ours_model, train_batches(data.train_images.to(device), data.train_labels.to(device),
                                                       recipe.batch_size, torch.Generator().manual_seed(0),
                                                       recipe.translate, recipe.flip, recipe.channels_last),
                             steps, recipe.bf16, device)
    loader = torch.utils.data.DataLoader(TutorialStyleDataset(data.train_images, data.train_labels), batch_size=128,
                                         shuffle=True, num_workers=2, persistent_workers=False)
    tutorial = images_per_second(build_model(recipe.architecture).to(device), iter(loader), steps, False, device)
    return {"compare": "images_per_second", "ours": round(ours, 1), "tutorial_style": round(tutorial, 1),
            "ratio": round(ours / tutorial, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=positive_int,
                        help="override the preset's number of epochs (the schedule spans them)")
    parser.add_argument("--data", help="data root (default $CIFAR10_ROOT or ./data)")
    parser.add_argument("--save", help="folder for seed<N>.pt checkpoints of exactly the models evaluated")
    parser.add_argument("--compare", action="store_true", help="add the tutorial-style pipeline's throughput")
    parser.add_argument("--quick", action="store_true", help="smoke run of the script (helpers.train.quick)")
    args = parser.parse_args(argv)

    device, recipe = pick_device(), PRESETS[args.preset]
    data = load_cifar10(args.data)
    if args.quick:
        data, recipe = quick(data, recipe)
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    results = []
    for seed in args.seeds:
        results.append(run_seed(data, recipe, seed, device, args.save))
        print(json.dumps({"preset": args.preset, **results[-1]}), flush=True)
    if args.compare:
        print(json.dumps(compare_pipelines(data, recipe, device)), flush=True)
    accuracies = [r["test_acc"] for r in results]
    print(json.dumps({"summary": args.preset, "seeds": args.seeds, "mean_test_acc": round(statistics.mean(accuracies), 2),
                      "min_test_acc": min(accuracies),
                      "mean_test_acc_plain": round(statistics.mean(r["test_acc_plain"] for r in results), 2),
                      "median_train_seconds": statistics.median(r["train_seconds"] for r in results),
                      "max_train_seconds": max(r["train_seconds"] for r in results)}))


if __name__ == "__main__":
    main()
