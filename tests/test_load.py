"""What holds when other processes share the machine: OpenMP's threads spin briefly, then sleep, while they wait,
set for every entry point, and the numbers a run computes stay bit-identical whatever the load."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

# Two-thread ops with pauses between them, as a training loop has (Python work, data, logging): the CPU time the
# process spends while its main thread sleeps (the waiting threads' spin, and nothing of the ops' own work, which
# grows on a slow processor), against the time it slept.
IDLE_THREADS = """
import time, helpers, torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
spent, slept = 0.0, 0.0
for _ in range(100):
    (a @ a).add_(1).relu_()
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(0.005)
    spent += time.process_time() - cpu
    slept += time.perf_counter() - wall
print(spent, slept)
"""


def fresh_python(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES} | {"PYTHONPATH": str(ROOT), **env}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_helpers_sets_a_short_spin_unless_the_user_chose_a_wait():
    code = "import os, helpers; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    assert fresh_python(code).split() == ["10000", "None"]
    assert fresh_python(code, OMP_WAIT_POLICY="ACTIVE").split() == ["None", "ACTIVE"]
    assert fresh_python(code, GOMP_SPINCOUNT="500").split() == ["500", "None"]


@pytest.mark.skipif(os.cpu_count() < 2, reason="one core: no second thread to wait")
def test_waiting_threads_of_a_process_that_imported_helpers_sleep_instead_of_spinning():
    """A spinning thread burns its core through every pause (and beside another job, takes the core its partner
    needs): told to spin, the process spends most of its pauses on the CPU; with the short spin, a small fraction."""
    bound = 0.3  # of the pauses: told to spin, about 1.0 alone, at least half that beside a busy neighbour
    spinning, slept = map(float, fresh_python(IDLE_THREADS, OMP_WAIT_POLICY="ACTIVE").split())
    assert spinning > bound * slept, f"{spinning:.2f} s over {slept:.2f} s: the probe cannot see a spinning thread"
    cpu, slept = map(float, fresh_python(IDLE_THREADS).split())
    assert cpu < bound * slept, f"{cpu:.2f} s of CPU time over {slept:.2f} s of pauses: the threads spin"


@pytest.mark.slow
def test_the_load_benchmark_finds_the_same_weights_whatever_the_wait_and_the_load(tmp_path):
    """benchmarks/threads.py end to end, tiny: its lines, and the wait policy changing no arithmetic, alone or beside
    the busy neighbour."""
    result = subprocess.run([sys.executable, "benchmarks/threads.py", "--cases", "tutorial:16:3", "--configs",
                             "short-spin", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    runs, summaries = lines[:4], lines[4:]
    assert [(r["config"], r["load"]) for r in runs] == [("default", "alone"), ("default", "busy"),
                                                        ("short-spin", "alone"), ("short-spin", "busy")]
    assert all(r["processor"] and r["torch"] and r["threads"] == runs[0]["threads"] and r["ms_per_step"] > 0
               for r in runs)
    assert len({sha for r in runs for sha in r["weights_sha256"]}) == 1
    assert [s["config"] for s in summaries] == ["default", "short-spin"]
    assert all(s["weights_as_default_alone"] for s in summaries)
