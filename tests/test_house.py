"""The house rules that drifted before, checked: the README's figures come from the committed records, every record
is in benchmarks/RESULTS.md's generated index, no measured figure hides in a code comment, no import circle, modules
of one sitting's length, and one training step readable in one place."""
import ast
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from helpers import loop
from helpers.lecture.records import NO_TTA, duration_text
from helpers.recipes import PRESETS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HELPERS = sorted((ROOT / "helpers").rglob("*.py"))


def readme_rows() -> list[list[str]]:
    """The cells of the README's results rows: the table rows that name a record file."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in README.read_text().splitlines()
            if line.startswith("|") and "benchmarks/results/" in line]


def test_the_readme_is_short():
    assert README.stat().st_size <= 15_000


def test_the_readme_layout_names_every_module_and_script():
    layout = README.read_text().split("## Layout")[1].split("\n## ")[0]
    files = HELPERS + sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.sh"))
    assert [f.name for f in files if f.name != "__init__.py" and f.name not in layout] == []
    packages = {p.parent.name for p in HELPERS if p.name == "__init__.py"} - {"helpers"}
    assert packages == {"runtime", "checker", "lecture", "submissions"}
    assert all(f"{name}/:" in layout for name in packages)


def test_every_preset_row_of_the_readme_quotes_its_record():
    rows = readme_rows()
    assert {re.match(r"`([\w-]+)`", row[0]).group(1) for row in rows} >= set(PRESETS)
    for row in rows:
        record = ROOT / re.search(r"`(benchmarks/results/current/[\w./-]+\.jsonl)`", row[-1]).group(1)
        lines = list(map(json.loads, record.read_text().splitlines()))
        summary, runs = next(r for r in lines if "summary" in r), [r for r in lines if "seed" in r]
        assert f"{summary['mean_test_acc_plain']:.2f}%" in row[5], row
        no_tta = PRESETS[summary["summary"]].recipe.tta == "none"
        assert (row[6] == NO_TTA) if no_tta else f"{summary['mean_test_acc']:.2f}%" in row[6], row
        assert duration_text(summary["median_train_seconds"]) == row[7], row
        assert f"{len(runs)} seed" in row[-1] and str(runs[0]["epochs"]) == row[4], row
        assert f"{runs[0]['params']:,}" == row[2] and row[8] == f"{runs[0]['processor']}, {runs[0]['precision']}", row


def git_history_available() -> bool:
    """The index names the commit that added each file: it needs the repository's history, not a shallow copy."""
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    return shallow.returncode == 0 and shallow.stdout.strip() == "false"


@pytest.mark.skipif(not git_history_available(), reason="not a git checkout with its whole history")
def test_the_index_of_every_record_file_in_the_record_document_is_current():
    checked = subprocess.run([sys.executable, "benchmarks/index_results.py", "--check"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr + "run: python benchmarks/index_results.py"


def comments_and_docstrings(path: Path) -> list[str]:
    source = path.read_text()
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    nodes = [n for n in ast.walk(ast.parse(source))
             if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return comments + [doc for doc in map(ast.get_docstring, nodes) if doc]


@pytest.mark.parametrize("path", HELPERS, ids=lambda p: p.name)
def test_no_measured_percentage_in_a_comment_or_docstring(path):
    """Measurements go stale in code: they belong in the records."""
    found = [m.group(0) for text in comments_and_docstrings(path) for m in re.finditer(r"\d+\.\d+%", text)]
    assert not found, f"{path.name}: {found}"


def module_name(path: Path) -> str:
    """helpers/checker/rules.py -> "checker.rules"; a package's __init__.py is the package itself."""
    parts = path.relative_to(ROOT / "helpers").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def helpers_imports(path: Path) -> set[str]:
    """The helpers modules that one module imports, relative or absolute, each as its module_name."""
    package = module_name(path).split(".")[:-1] if path.name != "__init__.py" else module_name(path).split(".")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1] if node.level > 1 else package
            names.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
            names.add(node.module.removeprefix("helpers."))
    return names - {""}


def test_the_import_reader_resolves_relative_imports_in_sub_packages():
    assert {"runtime.device", "models", "errors", "checker.rules", "checker.trace"} <= \
        helpers_imports(ROOT / "helpers/checker/spec.py")
    assert "checker.graph" in helpers_imports(ROOT / "helpers/checker/windows.py")


def test_no_two_helpers_modules_import_each_other_directly_or_in_a_loop():
    graph = {module_name(p): helpers_imports(p) for p in HELPERS if p.name != "__init__.py"}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    circles = [module for module in graph if reaches(module, module)]
    assert not circles, f"modules in an import circle: {circles}"


def test_the_training_step_reads_top_to_bottom_in_one_function():
    """train() holds the step itself (forward, backward, optimiser step), calls no train() (no probe inside it) and
    asks no object what it can do (hasattr)."""
    tree = ast.parse(inspect.getsource(loop.train)).body[0]
    calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call)]
    called = {(c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", None)) for c in calls}
    assert {"net", "backward", "step", "set_learning_rates", "evaluate", "save_checkpoint"} <= called
    # net.train() (no argument) switches a module to training mode; any other call of a train is the loop again
    loops = [ast.unparse(c) for c in calls if ast.unparse(c.func).endswith("train") and ast.unparse(c) != "net.train()"]
    assert not loops and "hasattr" not in called, loops


# Run as each entry point runs, in a fresh process: GOMP_SPINCOUNT is recorded when torch starts to load.
WAIT_PROBE = """
import importlib.abc, os, runpy, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("GOMP_SPINCOUNT"))
sys.meta_path.insert(0, Watch())
kind, target = sys.argv[1:3]
sys.argv = [target, "--help"]
try:
    runpy.run_module(target, run_name="__main__", alter_sys=True) if kind == "module" else \\
        runpy.run_path(target, run_name="__main__")
except SystemExit:
    pass
print("torch loaded with GOMP_SPINCOUNT", seen)
"""
ENTRY_POINTS = [("module", "helpers.train"), ("module", "helpers.predict"), ("module", "helpers.check"),
                *(("path", f"benchmarks/{p.name}") for p in sorted((ROOT / "benchmarks").glob("*.py"))
                  if p.name not in ("threads.py", "index_results.py"))]  # threads.py sets each wait it compares


@pytest.mark.slow  # several seconds: the quick tier keeps to about two minutes
@pytest.mark.parametrize("kind, target", ENTRY_POINTS, ids=lambda value: str(value))
def test_every_entry_point_loads_torch_with_the_same_openmp_wait(kind, target):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", WAIT_PROBE, kind, target], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert "torch loaded with GOMP_SPINCOUNT ['10000']" in done.stdout, done.stdout[-500:] + done.stderr[-2000:]


def test_the_runtime_is_the_ground_floor():
    """runtime/ (device, precision, processes) imports nothing of the core above it: only itself and the errors."""
    above = {module: helpers_imports(p) - {"errors"} for p in HELPERS
             if (module := module_name(p)).startswith("runtime")}
    assert {m: sorted(i) for m, i in above.items() if any(not name.startswith("runtime") for name in i)} == {}
    assert set(above) >= {"runtime", "runtime.device", "runtime.precision", "runtime.distributed"}


ONE_SITTING = 400  # lines: what "read in one sitting" means here (the README's contributing line)


@pytest.mark.parametrize("path", HELPERS, ids=lambda p: module_name(p) or "helpers")
def test_every_module_reads_in_one_sitting(path):
    assert len(path.read_text().splitlines()) <= ONE_SITTING


def test_git_ignores_what_pip_install_leaves_beside_the_sources():
    """setuptools writes build/ and an .egg-info folder into the tree; unignored, they show a second helpers."""
    left = ["build/lib/helpers/check.py", "s7_helpers.egg-info/PKG-INFO"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *left], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == left
