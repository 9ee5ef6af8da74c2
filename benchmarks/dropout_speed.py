"""Seconds per forward and backward pass of anyone's network on a CPU, with torch's own dropout and with the engine's
(helpers.dropout, which draws the masks' random bits in bulk), alternated in one run.

    python benchmarks/dropout_speed.py [--net tests/own_nets.py:DropoutNet] [--batch 256] [--rounds 7]

Each round times one pass each way, in the precision the engine would choose, on made-up images of the batch size
(untimed passes first, so both ways start warm); the line gives the medians over the rounds and their ratio. The
optimiser's step is left out: it is the same either way.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helpers  # noqa: E402, F401  (first: it sets OpenMP's wait, which torch reads as it loads)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from helpers.recipes import NET_RECIPE  # noqa: E402
from helpers.runtime.device import keep_freed_memory, processor_name  # noqa: E402
from helpers.runtime.precision import Precision, decide_precision  # noqa: E402
from helpers.user_network import user_network  # noqa: E402


def seconds_per_pass(forward, images, labels, precision: Precision) -> float:
    start = time.perf_counter()
    with precision.autocast:
        loss = F.cross_entropy(forward(images), labels)
    loss.backward()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/dropout_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="tests/own_nets.py:DropoutNet", metavar="FILE.py[:NAME]")
    parser.add_argument("--batch", type=int, default=NET_RECIPE.batch_size)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    keep_freed_memory()
    device = torch.device("cpu")
    recipe, _ = decide_precision(NET_RECIPE, device)
    precision = Precision.for_run(device, recipe.precision, args.batch)
    torch.manual_seed(0)
    model = user_network(args.net).to(memory_format=torch.channels_last).train()
    images = torch.rand(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(10, (args.batch,))
    ways = {"torch": lambda x: model.net(model.normalize(x)),  # the network called as it is: torch's dropout
            "bulk": model}  # UserNetwork's forward: the engine's dropout
    times = {way: [] for way in ways}
    with precision.whole_run():
        for round_ in range(args.rounds + 1):  # round 0 warms both up, untimed
            for way, forward in ways.items():
                seconds = seconds_per_pass(forward, images, labels, precision)
                model.zero_grad(set_to_none=True)
                if round_:
                    times[way].append(seconds)
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(json.dumps({"net": args.net, "batch": args.batch, "rounds": args.rounds, "precision": recipe.precision,
                      "processor": processor_name(device), "threads": torch.get_num_threads(),
                      "seconds_per_pass": {way: round(value, 6) for way, value in medians.items()},
                      "torch_over_bulk": round(medians["torch"] / medians["bulk"], 2)}))


if __name__ == "__main__":
    main()
