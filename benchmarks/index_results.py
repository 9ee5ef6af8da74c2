"""The index of benchmarks/results/ in RESULTS.md, generated from the files themselves, so that no figure or commit
in it is typed by hand.

    python benchmarks/index_results.py           # write the index between its markers in RESULTS.md
    python benchmarks/index_results.py --check   # status 1 when the index is not what the files say

One row per file: the preset, epochs, seeds, mean accuracies (plain and with the recipe's TTA), processor and
precision of its records, and the commit that ran them: the records' own where they carry one (time_to_accuracy.py
writes it; a star when the tree had changes), else the last commit that wrote the file's content (git log --follow,
moves aside), which the prose of each section qualifies where the code that ran differs.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENT = ROOT / "benchmarks" / "RESULTS.md"
BEGIN = "<!-- index of results/: written by `python benchmarks/index_results.py`, not by hand -->"
END = "<!-- end of the index -->"
HEADER = ["file", "preset", "epochs", "seeds", "plain mean", "TTA mean", "processor", "precision", "commit"]


def records_of(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file, one a line; none for other files (a profile's text)."""
    if path.suffix != ".jsonl":
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seeds_text(seeds: list[int]) -> str:
    """'0-4' for a run of consecutive seeds, else '0, 2'."""
    seeds = sorted(set(seeds))
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def distinct(runs: list[dict], key: str) -> str:
    return " and ".join(dict.fromkeys(str(r[key]) for r in runs if key in r))


def mean_text(runs: list[dict], key: str) -> str:
    """The mean of the runs' figures under `key`; a list there (student_recipe.py's accuracy after each epoch) is
    not one figure, and counts for none."""
    values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return f"{statistics.mean(values):.2f}%" if values else ""


def commit_text(records: list[dict], written: str | None) -> str:
    """The records' own commits (a star where the tree had changes), else the commit that wrote the file."""
    own = dict.fromkeys(f"`{r['commit'][:7]}`{'*' * bool(r.get('dirty'))}" for r in records if r.get("commit"))
    if own:
        return " and ".join(own)
    return f"written in `{written}`" if written else "not committed"


def preset_text(runs: list[dict]) -> str:
    """The preset, with the recipe changes a screen ran with (--set) where its records name them."""
    presets = dict.fromkeys(f"`{r['preset']}`" + (" " + " ".join(f"{k}={v}" for k, v in r["overrides"].items())
                                                  if r.get("overrides") else "") for r in runs if "preset" in r)
    return " and ".join(presets)


def row(path: Path, written: str | None, folder: Path = RESULTS) -> list[str]:
    records = records_of(path)
    runs = [r for r in records if "seed" in r]
    return [f"`{path.relative_to(folder.parent).as_posix()}`", preset_text(runs or records), distinct(runs, "epochs"),
            seeds_text([r["seed"] for r in runs]), mean_text(runs, "test_acc_plain"), mean_text(runs, "test_acc"),
            distinct(runs or records, "processor"), distinct(runs, "precision"), commit_text(records, written)]


def commits_that_wrote(paths: list[Path], root: Path = ROOT) -> dict[Path, str | None]:
    """For each file, the short hash of the last commit that added or changed its content, a move to another folder
    not counting (a preset's record is rewritten in place when the preset changes, so the commit that first added
    the file may hold other code); None where git does not know it (not committed yet, or no git checkout)."""
    written = {}
    for path in paths:
        try:
            log = subprocess.run(["git", "log", "--follow", "--diff-filter=AM", "--format=%H", "-1", "--", str(path)],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.split()
        except (OSError, subprocess.CalledProcessError):
            log = []
        written[path] = log[0][:7] if log else None
    return written


def index_table(folder: Path = RESULTS) -> str:
    """The index as a Markdown table: the current records first, then the archive, each in path order."""
    paths = sorted((p for p in folder.rglob("*") if p.is_file()),
                   key=lambda p: (p.relative_to(folder).parts[0] != "current", p.as_posix()))
    written = commits_that_wrote(paths)
    alignment = ["---", "---", "---:", "---", "---:", "---:", "---", "---", "---"]
    rows = [HEADER, alignment, *(row(p, written[p], folder) for p in paths)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def with_index(document: str, table: str) -> str:
    """The document with `table` between its markers; ValueError when it has not exactly one pair of them."""
    if document.count(BEGIN) != 1 or document.count(END) != 1 or document.index(BEGIN) > document.index(END):
        raise ValueError(f"{DOCUMENT.name} must hold the markers {BEGIN!r} and then {END!r} once each")
    head, rest = document.split(BEGIN)
    return f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/index_results.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; status 1 when the index is stale")
    args = parser.parse_args(argv)
    document = DOCUMENT.read_text()
    try:
        indexed = with_index(document, index_table())
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if args.check:
        if indexed != document:
            print(f"{DOCUMENT} has a stale index of results/: run python benchmarks/index_results.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(indexed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
