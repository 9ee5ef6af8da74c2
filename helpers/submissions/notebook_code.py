"""Which network a notebook trains, and the few statements that build it, read with `ast` (never by pattern).

Only what defines the network runs: imports, function and class definitions, and the assignments those need
(a config the constructor reads). Shell and magic lines, drive mounts, downloads, data loading, training loops
and plots never run. The network is the one the notebook instantiates and trains: a variable bound to a call
whose parameters go to an optimizer ranks first, then one passed to a train/fit function, then one only passed to
summary(), then one never used; among equals the last one the notebook made.
"""
import ast
from dataclasses import dataclass, replace
from pathlib import Path

from .notebook_cells import Cell, read_cells

OPTIMIZED, TRAINED, USED, MADE = 3, 2, 1, 0
CHAINED = {"to", "cuda", "cpu", "float", "double", "train", "eval"}  # Net().to(device): still the Net() call
SKIPPED_IMPORTS = ("google.colab",)


@dataclass(frozen=True)
class Instantiation:
    """`variable = callee(args)` somewhere at the notebook's top level."""
    variable: str
    call: ast.Call
    cell: Cell
    use: int = MADE

    @property
    def callee(self) -> str:
        return ast.unparse(self.call.func)

    @property
    def text(self) -> str:
        return ast.unparse(self.call)


@dataclass(frozen=True)
class Statement:
    cell: Cell
    node: ast.stmt

    def names_read(self) -> set[str]:
        return {node.id for node in ast.walk(self.node) if isinstance(node, ast.Name)}

    def names_bound(self) -> set[str]:
        if isinstance(self.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return {self.node.name}
        targets = self.node.targets if isinstance(self.node, ast.Assign) else [self.node.target]
        return {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}


@dataclass(frozen=True)
class NotebookProgram:
    cells: list[Cell]
    imports: list[Statement]
    definitions: list[Statement]        # defs, classes and top-level assignments, in the order they ran
    instantiations: list[Instantiation]  # the most likely network first
    unreadable: list[str]               # "cell 4: SyntaxError: ..." for cells ast cannot parse

    def statements_for(self, roots: set[str]) -> list[Statement]:
        """The imports, then the definitions that `roots` need, directly or through each other, in the order they
        ran: the network's classes, the functions they call, the configs they read."""
        needed, chosen, grown = set(roots), set(), True
        while grown:
            grown = False
            for index, statement in enumerate(self.definitions):
                if index not in chosen and statement.names_bound() & needed:
                    chosen.add(index)
                    needed |= statement.names_read()
                    grown = True
        return self.imports + [statement for index, statement in enumerate(self.definitions) if index in chosen]


def read_program(path: Path) -> NotebookProgram:
    cells = read_cells(path)
    imports, definitions, unreadable, top_level = [], [], [], []
    for cell in cells:
        try:
            module = ast.parse(cell.source)
        except SyntaxError as error:
            unreadable.append(f"{cell.label}: SyntaxError: {error.msg} (line {error.lineno})")
            continue
        for node in module.body:
            top_level.append((cell, node))
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not _skipped_import(node):
                imports.append(Statement(cell, node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or _plain_assignment(node):
                definitions.append(Statement(cell, node))
    return NotebookProgram(cells, imports, definitions, _rank(_instantiations(top_level)), unreadable)


def _skipped_import(node) -> bool:
    modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    return any(module.startswith(skipped) for module in modules for skipped in SKIPPED_IMPORTS)


def _plain_assignment(node) -> bool:
    """`name = ...` or `a, b = ...` at the top level: what a constructor may read. Never a shell line."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return False
    names_only = all(isinstance(leaf, (ast.Name, ast.Tuple, ast.List, ast.Store))
                     for target in targets for leaf in ast.walk(target))
    return names_only and not any(isinstance(leaf, ast.Name) and leaf.id == "get_ipython"
                                  for leaf in ast.walk(node.value))


def _constructed(value) -> ast.Call | None:
    """The call that makes the object in `Net(...)`, `Net(...).to(device)` or `Net().cuda()`."""
    while (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in CHAINED
           and isinstance(value.func.value, ast.Call)):
        value = value.func.value
    if isinstance(value, ast.Call) and isinstance(value.func, (ast.Name, ast.Attribute)):
        return value
    return None


def _outside_definitions(node):
    """The nodes of a top-level statement, without the bodies of functions and classes: their names are their
    own parameters, not the notebook's variables."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if not isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(current))


def _uses(node) -> list[tuple[str, int]]:
    """(variable, how) for each variable a call uses: its parameters given to anything (an optimizer):
    OPTIMIZED; passed to a train/fit function, or model.train() / model.fit(): TRAINED; passed to any other call
    (summary, print): USED."""
    if not isinstance(node, ast.Call):
        return []
    if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        if node.func.attr in ("parameters", "named_parameters"):
            return [(node.func.value.id, OPTIMIZED)]
        if node.func.attr in ("fit", "train"):
            return [(node.func.value.id, TRAINED)]
    strength = TRAINED if any(word in ast.unparse(node.func).lower() for word in ("train", "fit")) else USED
    return [(argument.id, strength) for argument in [*node.args, *(keyword.value for keyword in node.keywords)]
            if isinstance(argument, ast.Name)]


def _instantiations(top_level) -> list[Instantiation]:
    """Every `variable = Callee(...)` outside definitions, in the order it ran, each with its strongest use. A use
    belongs to the variable's latest binding; a use before any binding (a training cell above the model cell in a
    notebook that never ran) to the next one."""
    made, current, pending = [], {}, {}
    for cell, statement in top_level:
        nodes = sorted((node for node in _outside_definitions(statement) if hasattr(node, "lineno")),
                       key=lambda node: (node.lineno, node.col_offset))
        for node in nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                call = _constructed(node.value)
                if call is not None:
                    variable = node.targets[0].id
                    made.append(Instantiation(variable, call, cell, pending.pop(variable, MADE)))
                    current[variable] = len(made) - 1
            for variable, strength in _uses(node):
                if variable in current:
                    index = current[variable]
                    made[index] = replace(made[index], use=max(made[index].use, strength))
                else:
                    pending[variable] = max(pending.get(variable, MADE), strength)
    return made


def _rank(made: list[Instantiation]) -> list[Instantiation]:
    """The strongest use first; among equals the later first."""
    order = {id(instantiation): index for index, instantiation in enumerate(made)}
    return sorted(made, key=lambda instantiation: (-instantiation.use, -order[id(instantiation)]))
