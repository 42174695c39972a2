"""Ctrl-C, SIGTERM and a dead peer during a 2-rank run (gloo, CPU).

The ranks must agree on the step they stop after, save the whole ensemble at that step and
exit with 128 + the signal; ``--resume`` then ends bit-identical to a run never stopped.
A peer that dies makes the survivor fail with one line, leaving the last checkpoint intact.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from _ranks import Ranks, funcmtl_argv, load_checkpoint

from funcmtl import tree
from funcmtl_cli.main import main

RUN = ["ensemble", "--members", "4", "--hidden", "8", "--batch-size", "16", "--steps", "120",
       "--log-every", "5", "--eval-every", "40", "--checkpoint-every", "40",
       "--data-options", "num_pairs=(200,50,50)"]
STOPPED = re.compile(r"funcmtl: interrupted after step (\d+)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, in this process."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _checkpoint(out: Path):
    return load_checkpoint(out)[1:]


def _assert_same_run(out: Path, reference: Path) -> None:
    (got, meta), (want, want_meta) = _checkpoint(out), _checkpoint(reference)
    assert meta == want_meta
    leaves, expected = tree.leaves(got), tree.leaves(want)
    assert len(leaves) == len(expected) > 10
    for x, y in zip(leaves, expected, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)
    assert (out / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


def _wait_for(path: Path, ranks: Ranks, lines: int = 1, timeout: float = 120.0) -> None:
    """Until ``path`` has ``lines`` lines (``metrics.jsonl``: training is that far along).
    Waiting on progress rather than on the clock keeps the moment random on any machine."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_bytes().count(b"\n") >= lines):
        if time.monotonic() > deadline or any(p.poll() is not None for p in ranks.procs):
            pytest.fail(f"{path.name} never appeared\n{ranks.logs_text()}")
        time.sleep(0.05)


# Where the signal goes: both ranks (a terminal's Ctrl-C, Slurm), both twice (a terminal's
# Ctrl-C plus torchrun forwarding it), or one rank only (`kill PID`).
DELIVERIES = ["both", "both-twice", "one"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_a_random_moment_saves_one_agreed_step_and_resumes_exactly(
    tmp_path, reference, signum
) -> None:
    rng = random.Random()
    for attempt, delivery in enumerate(DELIVERIES):
        out = tmp_path / f"run{attempt}"
        records, delay, skew = rng.randint(1, 8), rng.uniform(0, 0.05), rng.uniform(0, 0.05)
        where = f"{delivery}, after {records} records + {delay:.3f} s, skew {skew:.3f} s"
        with Ranks(funcmtl_argv([*RUN, "--out", str(out)]), tmp_path / f"logs{attempt}") as ranks:
            _wait_for(out / "metrics.jsonl", ranks, lines=records)
            time.sleep(delay)
            order = rng.sample(range(2), 2)
            targets = order[:1] if delivery == "one" else order
            for _ in range(2 if delivery == "both-twice" else 1):
                for rank in targets:
                    ranks.signal(rank, signum)
                    time.sleep(skew)
            codes = ranks.wait(60)
            logs = ranks.logs_text()
        assert codes == [128 + signum] * 2, f"{where}\n{logs}"
        steps = {int(s) for s in STOPPED.findall(logs)}
        assert len(steps) == 1, f"{where}: the ranks stopped at {steps}\n{logs}"
        assert "Traceback" not in logs, logs
        step = steps.pop()
        assert f"continue with --out {out} --resume" in ranks.log(0), logs
        assert _checkpoint(out)[1] == {"step": step, "skipped": 0}
        if attempt == 0:  # resume on 2 ranks, else in this process: both read the whole run
            with Ranks(funcmtl_argv([*RUN, "--out", str(out), "--resume"]),
                       tmp_path / "resume") as again:
                assert again.wait(120) == [0, 0], again.logs_text()
        else:
            assert main([*RUN, "--out", str(out), "--resume"]) == 0
        _assert_same_run(out, reference)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_dead_peer_makes_the_survivor_fail_in_one_line_keeping_the_last_checkpoint(
    tmp_path, reference, victim
) -> None:
    out = tmp_path / "run"
    survivor = 1 - victim
    with Ranks(funcmtl_argv([*RUN, "--out", str(out)]), tmp_path / "logs") as ranks:
        _wait_for(out / "metrics.jsonl", ranks, lines=random.randint(10, 14))  # past step 40
        ranks.procs[victim].kill()
        time.sleep(0.1)
        ranks.signal(survivor, signal.SIGTERM)  # what torchrun does to the survivors
        codes = ranks.wait(60, ranks=(survivor,))
        log = ranks.log(survivor)
    assert codes[survivor] == 1, log
    errors = [line for line in log.splitlines() if line.startswith("funcmtl: error:")]
    assert len(errors) == 1, log
    assert "Traceback" not in log and "Fatal Python error" not in log, log
    assert f"the last checkpoint in {out}" in errors[0], log
    step = _checkpoint(out)[1]["step"]  # loads: not corrupted, and a periodic one
    assert step % 40 == 0 and step > 0
    assert main([*RUN, "--out", str(out), "--resume"]) == 0
    _assert_same_run(out, reference)
