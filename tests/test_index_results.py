"""RESULTS.md's index of benchmarks/results/, generated from the records: what a row says, and where it goes."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import index_results  # noqa: E402
from index_results import BEGIN, END, index_table, row, seeds_text, with_index  # noqa: E402


def write(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def seed(n, plain, tta, **more):
    return {"preset": "fast", "seed": n, "epochs": 1.2, "processor": "Zen 4", "precision": "bf16",
            "test_acc_plain": plain, "test_acc": tta, **more}


def test_a_row_gives_the_records_means_and_the_commit_they_carry(tmp_path):
    path = write(tmp_path / "results" / "current" / "fast.jsonl",
                 [seed(0, 81.0, 82.0, commit="0123456789abcdef", dirty=False),
                  seed(1, 82.5, 83.5, commit="0123456789abcdef", dirty=False), {"summary": "fast", "seeds": [0, 1]}])
    assert row(path, "fedcba9", tmp_path / "results") == [
        "`results/current/fast.jsonl`", "`fast`", "1.2", "0, 1", "81.75%", "82.75%", "Zen 4", "bf16", "`0123456`"]


def test_a_record_without_a_commit_names_the_one_that_wrote_its_file_and_a_dirty_tree_gets_a_star(tmp_path):
    older = write(tmp_path / "results" / "archive" / "old.jsonl", [seed(s, 80.0, 81.0) for s in range(5)])
    assert row(older, "fedcba9", tmp_path / "results")[3:] == ["0-4", "80.00%", "81.00%", "Zen 4", "bf16",
                                                                 "written in `fedcba9`"]
    assert row(older, None, tmp_path / "results")[-1] == "not committed"
    dirty = write(tmp_path / "results" / "archive" / "dirty.jsonl",
                  [seed(0, 80.0, 81.0, commit="abcdef0123", dirty=True, overrides={"lr": 0.2})])
    assert row(dirty, None, tmp_path / "results")[1:2] + row(dirty, None, tmp_path / "results")[-1:] == \
        ["`fast` lr=0.2", "`abcdef0`*"]


def test_seeds_are_written_as_a_range_when_they_run_on():
    assert [seeds_text(s) for s in ([0, 1, 2, 3, 4], [5, 6, 7], [0, 1], [0, 2], [0, 0], [])] == \
        ["0-4", "5-7", "0, 1", "0, 2", "0", ""]


def test_the_current_records_come_first_and_every_file_has_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(index_results, "commits_that_wrote", lambda paths: dict.fromkeys(paths))
    results = tmp_path / "results"
    write(results / "archive" / "a-screen" / "x.jsonl", [seed(0, 80.0, 81.0)])
    write(results / "current" / "fast.jsonl", [seed(0, 81.0, 82.0)])
    (results / "archive" / "profile.txt").write_text("a profile")
    files = [line.split("|")[1].strip() for line in index_table(results).splitlines()[2:]]
    assert files == ["`results/current/fast.jsonl`", "`results/archive/a-screen/x.jsonl`",
                     "`results/archive/profile.txt`"]


def test_the_index_goes_between_its_markers_and_the_prose_around_it_stays():
    document = f"# Record\nprose before\n{BEGIN}\nan old table\n{END}\nprose after\n"
    assert with_index(document, "| new |") == f"# Record\nprose before\n{BEGIN}\n| new |\n{END}\nprose after\n"
    for broken in ("no markers", f"{END}\n{BEGIN}", f"{BEGIN}\n{END}\n{BEGIN}\n{END}"):
        with pytest.raises(ValueError, match="must hold the markers"):
            with_index(broken, "| new |")


def test_check_reports_a_stale_index_and_changes_nothing(tmp_path, monkeypatch, capsys):
    document = tmp_path / "RESULTS.md"
    document.write_text(f"prose\n{BEGIN}\n| stale |\n{END}\n")
    monkeypatch.setattr(index_results, "DOCUMENT", document)
    monkeypatch.setattr(index_results, "index_table", lambda: "| fresh |")
    assert index_results.main(["--check"]) == 1 and "stale index" in capsys.readouterr().err
    assert "| stale |" in document.read_text()
    assert index_results.main([]) == 0 and index_results.main(["--check"]) == 0
    assert document.read_text() == f"prose\n{BEGIN}\n| fresh |\n{END}\n"
