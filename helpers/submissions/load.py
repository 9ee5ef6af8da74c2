"""One network from what a student hands in: `file.py[:Name]` or `notebook.ipynb[:Name]`, built on this machine.

`load_entry` is the one loader of `python -m helpers.check` and `helpers.train --net`. Name is a class or a factory;
without it a .py file's one nn.Module class is taken (the one called Net, if it defines several), and a notebook's
network is the one it instantiates and trains, built with the arguments it passes (notebook_code). Whatever fails
is a LoadError with a one-line message: the commands print it after `error:`.
"""
import ast
import importlib.util
import inspect
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import torch
from torch import nn

from ..checker.spec import MAX_PARAMS
from ..errors import first_line
from ..models import count_parameters
from .notebook_cells import NotebookError
from .notebook_code import OPTIMIZED, read_program

ABSURD_PARAMS = 100 * MAX_PARAMS  # refused before any copy or trace: a 1e9-parameter network took 21 GB to check
NOTEBOOK, SOURCES = ".ipynb", (".py", ".ipynb")


class LoadError(Exception):
    """The network cannot be built from what the command line names."""


@dataclass(frozen=True)
class Loaded:
    model: nn.Module
    file: Path                 # the .py or .ipynb it came from
    name: str                  # the class or factory that built it
    notes: list[str] = field(default_factory=list)  # said beside the result: "built as Net(cfg) (cell 5 [7])"
    cell: int | None = None    # the notebook cell whose call built it: its outputs and those after it are its run


def split_target(target: str) -> tuple[Path, str]:
    """"dir:with:colons/net.py" -> (that path, ""); "net.ipynb:Net" -> (net.ipynb, "Net"): a name is split off
    only at the last colon, only when what follows is an identifier and the path does not already end a source."""
    if target.endswith(SOURCES):
        return Path(target), ""
    path, colon, name = target.rpartition(":")
    return (Path(path), name) if colon and path and name.isidentifier() else (Path(target), "")


def load_entry(target: str) -> Loaded:
    """The network `target` names, built; LoadError (one line) when it cannot be."""
    path, name = split_target(target)
    if not path.is_file():  # a FIFO or a folder too: never opened
        raise LoadError(f"{path} is not a file")
    notes = []
    with _on_import_path(_import_roots(path)):
        build, name, call, cell = (_notebook_entry if path.suffix == NOTEBOOK else _file_entry)(path, name, notes)
        model = _built(build, name, call, path, notes)
    return Loaded(model, path, name, notes, cell)


def _import_roots(path: Path) -> list[Path]:
    """The file's folder (its imports of its neighbours), and for a notebook the repository root above it, so that
    `from models.s7 import Net` works from a notebook in a subfolder."""
    folder = path.parent.resolve()
    if path.suffix != NOTEBOOK:
        return [folder]
    root = next((parent for parent in (folder, *folder.parents) if (parent / ".git").exists()), folder)
    return [folder] + ([root] if root != folder else [])


@contextmanager
def _on_import_path(folders: list[Path]):
    added = [str(folder) for folder in folders]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            sys.path.remove(folder)


def _file_entry(path: Path, name: str, notes: list[str]):
    """(builder, name, call text, None) for a .py file."""
    spec = importlib.util.spec_from_file_location(f"_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise LoadError(f"cannot import {path}: {type(error).__name__}: {first_line(error)}") from error
    if name:
        if not hasattr(module, name):
            defined = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                             and getattr(v, "__module__", None) == module.__name__)
            raise LoadError(f"{path} has no {name!r} (it defines: {', '.join(defined) or 'nothing callable'})")
        return getattr(module, name), name, f"{name}()", None
    network = _the_one_class(vars(module), module.__name__, str(path))
    return network, network.__name__, f"{network.__name__}()", None


def _the_one_class(namespace: dict, module_name: str, where: str):
    own = [v for v in namespace.values() if inspect.isclass(v) and issubclass(v, nn.Module)
           and v.__module__ == module_name]
    own = [v for v in own if v.__name__ == "Net"] or own
    if len(own) != 1:
        raise LoadError(f"{where} defines {len(own)} nn.Module classes ({', '.join(v.__name__ for v in own) or 'none'})"
                        f": name one, or a function that builds the network, {where}:Name")
    return own[0]


def _notebook_entry(path: Path, name: str, notes: list[str]):
    """(builder, name, call text, cell number) for a notebook: the statements that define its network run in a
    module of their own, then the call that made it there is made again here."""
    try:
        program = read_program(path)
    except NotebookError as error:
        raise LoadError(str(error)) from None
    module = types.ModuleType(f"_checked_{path.stem}")
    sys.modules[module.__name__] = module  # classes defined here pickle and inspect as a file's would
    failed, done = [], set()

    def run(roots: set[str]):
        for statement in program.statements_for(roots):
            if id(statement) not in done:
                done.add(id(statement))
                try:
                    exec(compile(ast.Module([statement.node], []), f"{path.name} {statement.cell.label}", "exec"),
                         vars(module))
                except Exception as error:  # not needed, perhaps: said only if the network then cannot be built
                    failed.append(f"{statement.cell.label}: {type(error).__name__}: {first_line(error)}")

    def why() -> str:
        reasons = failed + program.unreadable
        return f" ({'; '.join(reasons[:3])})" if reasons else ""

    candidates = [made for made in program.instantiations if not name or made.callee == name]
    run({_root(made.call.func) for made in candidates} | ({name} if name else set()))
    chosen = next((made for made in candidates if _is_network(made, vars(module), module.__name__)), None)
    if chosen is not None:
        run({node.id for node in ast.walk(chosen.call) if isinstance(node, ast.Name)})
        notes.append(f"built as {chosen.text} ({chosen.cell.label})")
        expression = ast.Expression(chosen.call)
        return (lambda: eval(compile(expression, str(path), "eval"), vars(module))), chosen.callee, chosen.text, \
            chosen.cell.number
    if name:
        if name not in vars(module):
            raise LoadError(f"{path} defines no {name!r}{why()}")
        return vars(module)[name], name, f"{name}()", None
    run({statement.node.name for statement in program.definitions if isinstance(statement.node, ast.ClassDef)})
    try:
        network = _the_one_class(vars(module), module.__name__, str(path))
    except LoadError as error:
        raise LoadError(f"{error}; it trains none that this checker can find{why()}") from None
    return network, network.__name__, f"{network.__name__}()", None


def _root(node) -> str:
    """`models.s7.Net` -> "models": the name a statement must bind."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _is_network(made, namespace: dict, module_name: str) -> bool:
    """An nn.Module class of the student's (not torch's: a loss is a module too), or the student's own function
    whose result had its parameters optimised (a factory, never a data loader)."""
    try:
        callee = eval(compile(ast.Expression(made.call.func), "<callee>", "eval"), namespace)
    except Exception:
        return False
    if inspect.isclass(callee):
        return issubclass(callee, nn.Module) and not callee.__module__.startswith("torch")
    return inspect.isfunction(callee) and made.use == OPTIMIZED and not callee.__module__.startswith("torch")


def _built(build, name: str, call: str, path: Path, notes: list[str]) -> nn.Module:
    try:
        with _cuda_mapped_to_cpu(notes):
            model = build()
    except Exception as error:
        hint = ""
        if isinstance(error, TypeError) and "required" in str(error):  # an argument the network needs
            hint = (f" (it is built with no arguments: add `def build(): return {name}(...)`, with your arguments, "
                    f"to {path.name} and name {path}:build)")
        raise LoadError(f"{call} failed: {type(error).__name__}: {first_line(error)}{hint}") from error
    if isinstance(model, torch.jit.ScriptModule):
        raise LoadError(f"{call} returned a TorchScript module, which hides the layers the rules read: pass the "
                        f"Python module (the nn.Module before torch.jit.script or trace)")
    if not isinstance(model, nn.Module):
        raise LoadError(f"{call} returned a {type(model).__name__}, not an nn.Module")
    parameters = count_parameters(model)
    if parameters > ABSURD_PARAMS:
        raise LoadError(f"{call} has {parameters:,} parameters, over the {ABSURD_PARAMS:,} this checker traces "
                        f"(the rule allows fewer than {MAX_PARAMS:,}): refused before any copy")
    return model


@contextmanager
def _cuda_mapped_to_cpu(notes: list[str]):
    """While the network is built on a machine without a GPU, .cuda() on a module or a tensor stays on the CPU,
    and the row says so: a constructor that calls it is still checked."""
    if torch.cuda.is_available():
        yield
        return

    def stays(self, *args, **kwargs):
        note = "the constructor called .cuda(): mapped to the CPU (no GPU here)"
        if note not in notes:
            notes.append(note)
        return self

    with patch.object(nn.Module, "cuda", stays), patch.object(torch.Tensor, "cuda", stays):
        yield
