"""python -m helpers.check path/to/file.py:Net [--input 3x64x64]: the S7 rules and the receptive field of anyone's
network, as a grader would check them.

Net is a class or a factory that builds the network with no arguments; without ":Net" the file's one nn.Module
subclass is taken (the one called Net, if it defines several). It prints the rule table, the receptive-field table and the field measured by gradients.
Status: 0 when every rule that can be checked from the network passes, 1 when one fails, 2 when the file cannot be
imported or has no such name (one "error:" line). The accuracy and the use of the GPU are properties of a training
run, not of the network: they read "not checked here" and count neither way.
"""
import argparse
import importlib.util
import inspect
import sys
from pathlib import Path

from torch import nn

from .checker.receptive_field import empirical_rf, format_rf_table, rf_rows
from .checker.spec import check_s7, format_checks
from .checker.trace import trace


class LoadError(Exception):
    """The network cannot be built from what the command line names."""


def input_shape(text: str) -> tuple[int, ...]:
    """"3x64x64" -> (3, 64, 64)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not CxHxW, e.g. 3x32x32")
    return shape


def _import(path: Path):
    if not path.is_file():
        raise LoadError(f"{path} is not a file")
    spec = importlib.util.spec_from_file_location(f"_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise LoadError(f"cannot import {path}: {type(error).__name__}: {str(error).partition(chr(10))[0]}") \
            from error
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return module


def load_network(target: str) -> nn.Module:
    """The network `file.py:Name` names, built with no arguments."""
    file, _, name = target.rpartition(":") if ":" in target else (target, "", "")
    module = _import(Path(file))
    if name:
        if not hasattr(module, name):
            defined = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                             and getattr(v, "__module__", None) == module.__name__)
            raise LoadError(f"{file} has no {name!r} (it defines: {', '.join(defined) or 'nothing callable'})")
        build = getattr(module, name)
    else:
        own = [v for v in vars(module).values() if inspect.isclass(v) and issubclass(v, nn.Module)
               and v.__module__ == module.__name__]
        own = [v for v in own if v.__name__ == "Net"] or own
        if len(own) != 1:
            raise LoadError(f"{file} defines {len(own)} nn.Module classes "
                            f"({', '.join(v.__name__ for v in own) or 'none'}): name one, or a function that builds "
                            f"the network, {file}:Name")
        build, name = own[0], own[0].__name__
    try:
        model = build()
    except Exception as error:
        hint = ""
        if isinstance(error, TypeError) and "required" in str(error):  # an argument the network needs
            hint = (f" (it is built with no arguments: add `def build(): return {name}(...)`, with your arguments, "
                    f"to {Path(file).name} and name {file}:build)")
        raise LoadError(f"{name}() failed: {type(error).__name__}: {str(error).partition(chr(10))[0]}{hint}") \
            from error
    if not isinstance(model, nn.Module):
        raise LoadError(f"{name}() returned a {type(model).__name__}, not an nn.Module")
    return model


def report(model: nn.Module, shape) -> tuple[str, bool]:
    """The text the command prints and whether a rule failed."""
    checks = check_s7(model, input_shape=shape)
    parts = [format_checks(checks)]
    failed = any(check.failed for check in checks)
    try:
        parts.append(format_rf_table(rf_rows(trace(model, shape))))
    except Exception as error:  # the rule table already says why the forward pass fails
        parts.append(f"receptive-field table: none, the forward pass fails: {type(error).__name__}: "
                     f"{str(error).partition(chr(10))[0]}")
        return "\n\n".join(parts), failed
    try:
        measured = f"{empirical_rf(model, shape)} px"
    except ValueError as error:  # a field the probe cannot reach: said, the analytic field stands
        measured = f"not measured: {error}"
    parts.append(f"measured by gradients: {measured}")
    return "\n\n".join(parts), failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.check", description=__doc__.partition("\n\n")[0])
    parser.add_argument("target", help="path/to/file.py:Net (a class or a factory called with no arguments)")
    parser.add_argument("--input", type=input_shape, default=(3, 32, 32), metavar="CxHxW",
                        help="the input shape of one image (default 3x32x32)")
    args = parser.parse_args(argv)
    try:
        model = load_network(args.target)
    except LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text, failed = report(model, args.input)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
