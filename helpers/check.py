"""python -m helpers.check PATH... [--csv FILE]: the S7 rules, the receptive field, the claimed accuracy and the GPU
of what students hand in, as a grader checks them. It runs the students' code: check code you do not trust in a
container.

PATH is file.py[:Name], notebook.ipynb[:Name], or a folder, where every notebook (recursively) is one submission.
Name is a class or a factory; without it a .py file's one nn.Module class is taken (Net, if it defines several), and a
notebook's network is the one it instantiates and trains, built with the arguments it passes. A notebook's accuracy
is the test accuracy it printed (the best epoch decides, the final beside it: claimed, not measured), its device what
its outputs show; --weights measures the accuracy on the 10,000 test images instead. Each submission runs in a
child process of its own, with a fresh working folder, no GPU and --timeout.
One submission prints the rule table, the receptive-field table and the field measured by gradients; several print
one line each. Status: 0 when every row passes every rule it checks, 1 when one fails, 2 when a path or a
submission cannot be read or checked (one "error:" line each).
"""
import argparse
import sys
import time
from pathlib import Path

from .data import default_data_root
from .submissions.batch import PathError, find_submissions, grade_in_child
from .submissions.load import split_target
from .submissions.normalization import parse_normalize
from .submissions.rows import failed, row_line, write_csv


def input_shape(text: str) -> tuple[int, ...]:
    """"3x64x64" -> (3, 64, 64)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not CxHxW, e.g. 3x32x32")
    return shape


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m helpers.check", description=__doc__.partition("\n\n")[0],
                                     epilog=__doc__.partition("\n\n")[2])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file.py[:Name], notebook.ipynb[:Name] or a folder")
    parser.add_argument("--input", type=input_shape, default=(3, 32, 32), metavar="CxHxW",
                        help="the input shape of one image (default 3x32x32)")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write one row per submission to FILE")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="S",
                        help="seconds each submission may take (default 60)")
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help="the state_dict or model the student shipped: measure the accuracy on the test images")
    parser.add_argument("--normalize", default="cifar", metavar="cifar|none|M1,M2,M3/S1,S2,S3",
                        help="with --weights: the normalisation the network was trained with (default cifar)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="with --weights: the CIFAR-10 root (default $CIFAR10_ROOT or ./data)")
    args = parser.parse_args(argv)
    try:
        parse_normalize(args.normalize)
    except argparse.ArgumentTypeError as error:
        parser.error(f"argument --normalize: {error}")
    return args


def child_options(args) -> list[str]:
    options = ["--input", *map(str, args.input), "--normalize", args.normalize]
    if args.weights is not None:
        options += ["--weights", str(args.weights.resolve()),
                    "--data", str((args.data or default_data_root()).resolve())]
    return options


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        submissions = find_submissions(args.paths)
        if args.weights is not None and len(submissions) != 1:
            raise PathError(f"--weights belongs to one submission, not {len(submissions)}")
    except PathError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    one = len(args.paths) == 1 and not split_target(args.paths[0])[0].is_dir()  # the full report, not a line
    rows, started = [], time.perf_counter()
    try:
        for submission in submissions:
            outcome = grade_in_child(submission, args.timeout, child_options(args))
            rows.append(outcome.row)
            if one and outcome.report:
                print(outcome.report)
            elif one:
                print(f"error: {outcome.row['error']}", file=sys.stderr)
            else:
                print(row_line(outcome.row), flush=True)
    except KeyboardInterrupt:
        print(f"error: interrupted after {len(rows)} of {len(submissions)} submissions"
              f"{f'; their rows are in {args.csv}' if args.csv and rows else ''}", file=sys.stderr)
        if args.csv and rows:
            write_csv(rows, args.csv)
        return 130
    if args.csv:
        try:
            write_csv(rows, args.csv)
        except OSError as error:
            print(f"error: cannot write {args.csv}: {error.strerror or error}", file=sys.stderr)
            return 2
    if not one:
        print(f"{len(rows)} submissions in {time.perf_counter() - started:.0f} s"
              f"{f'; the table is in {args.csv}' if args.csv else ''}")
    if any(row["error"] for row in rows):
        return 2
    return 1 if any(failed(row) for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
