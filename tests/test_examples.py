"""The multi-task examples run end to end (short versions) and learn something.

Each script runs as its own process, as a reader would run it, with
``FUNCMTL_EXAMPLE_QUICK=1`` (a few steps on a small split) and one CPU thread (tiny matrices
gain nothing from more, and the suite shares the machine).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 0.1  # ten digit classes


def run_example(name: str) -> str:
    env = {**os.environ, "FUNCMTL_EXAMPLE_QUICK": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def numbers_after(label: str, text: str) -> list[float]:
    """The numbers on every line that starts with ``label`` (after stripping), in order."""
    lines = [line.strip() for line in text.splitlines()]
    found = [line[len(label) :] for line in lines if line.startswith(label)]
    assert found, f"no line starts with {label!r} in:\n{text}"
    return [float(v) for line in found for v in re.findall(r"\d+\.\d+", line)]


def test_mtl_pcgrad():
    out = run_example("mtl_pcgrad.py")
    left, _chance = numbers_after("left  accuracy", out)
    right, _chance = numbers_after("right accuracy", out)
    assert left > 2 * CHANCE and right > 2 * CHANCE
    mse, baseline = numbers_after("sum   MSE", out)
    assert mse < baseline  # better than predicting the mean sum
    pair_shares = [v for label in ("left vs right", "left vs sum", "right vs sum")
                   for v in numbers_after(label, out)]
    (share,) = numbers_after("all pairs", out)
    # The overall share is the mean of the three pairs' (printed to 0.1%), and the tasks do
    # conflict: the digits and their sum pull the shared trunk apart on a good part of steps.
    assert abs(share - sum(pair_shares) / 3) <= 0.1 + 1e-9
    assert all(5.0 < v < 95.0 for v in pair_shares)


def test_vmapped_mtl_models():
    out = run_example("vmapped_mtl_models.py")
    # Two tables (K seeds, then K learning rates), each with K member rows and a mean ± std.
    assert len(re.findall(r"^[0-3] ", out, flags=re.MULTILINE)) == 4
    means = numbers_after("mean ± std", out)  # mean, std per column: 2 tables x 3 columns
    assert len(means) == 12
    left_mean, _, right_mean, _, mse_mean, _ = means[:6]
    assert left_mean > 2 * CHANCE and right_mean > 2 * CHANCE and 0 < mse_mean < 0.1

def test_custom_aggregator():
    out = run_example("custom_aggregator.py")
    assert "(checked)" in out
    for task in ("left", "right"):  # a table row: task, metric, then one number per method
        (row,) = [line.split() for line in out.splitlines() if line.split()[:2] == [task,
                                                                                   "accuracy"]]
        mean, ours = map(float, row[2:])
        assert mean > 2 * CHANCE and ours > 2 * CHANCE


def test_mtl_step_by_hand_equals_make_step():
    out = run_example("mtl_step_by_hand.py")
    error = float(out.split("largest difference from make_step:")[1].split()[0])
    assert error < 1e-6
    assert len(numbers_after("task losses", out)) == 3
