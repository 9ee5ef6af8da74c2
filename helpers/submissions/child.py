"""python -m helpers.submissions.child RESULT SUBMISSION TARGET [options]: one submission graded in this process,
which batch started in a fresh working folder with no GPU and a time limit. Whatever the student's code does,
sys.exit included, becomes the row's error; the row goes to RESULT as JSON, and the parent alone sets the status."""
import argparse
import json
import sys
from pathlib import Path

from ..data import DatasetError
from ..errors import first_line
from .grade import grade
from .load import LoadError, load_entry
from .normalization import parse_normalize
from .weights import WeightsError


def graded(args) -> dict:
    try:
        loaded = load_entry(args.target)
        result = grade(args.submission, loaded, tuple(args.input), args.weights, parse_normalize(args.normalize),
                       args.data)
        return {"row": result.row, "report": result.report}
    except (LoadError, WeightsError, DatasetError) as error:
        return {"error": str(error)}
    except SystemExit as error:
        return {"error": f"the submission's code called sys.exit({error.code!r}): nothing of it could be checked"}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {first_line(error)}"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers.submissions.child")
    parser.add_argument("result", type=Path)
    parser.add_argument("submission")
    parser.add_argument("target")
    parser.add_argument("--input", type=int, nargs=3, default=[3, 32, 32])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--normalize", default="cifar")
    parser.add_argument("--data", type=Path)
    args = parser.parse_args(argv)
    args.result.write_text(json.dumps(graded(args)), encoding="utf-8")


if __name__ == "__main__":
    main()
    sys.exit(0)
