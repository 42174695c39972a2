"""funcmtl.rundir: one run per directory (an OS lock), stale temporaries, file modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from funcmtl import checkpoint
from funcmtl.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"lr": 0.01, "steps": 100}

HOLD = """
import sys, time
from funcmtl.rundir import RunDir
run = RunDir.open(sys.argv[1], {"lr": 0.01, "steps": 100}, resume=sys.argv[2] == "1")
print("open", flush=True)
time.sleep(600)
"""


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")}


def _holder(out: Path, *, resume: bool = False) -> subprocess.Popen:
    """Another process that opens ``out`` and keeps it open until killed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "1" if resume else "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "open":
        proc.kill()
        pytest.fail(f"the holder did not open {out}: {proc.communicate()}")
    return proc


def test_a_directory_in_use_is_refused_until_its_holder_dies(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        before = snapshot(out)
        for resume in (False, True):
            with pytest.raises(ValueError) as error:
                RunDir.open(out, CONFIG, resume=resume)
            assert str(error.value) == f"{out} is in use by another run (pid {proc.pid})."
        assert snapshot(out) == before
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock
        proc.wait(timeout=30)
    with pytest.raises(ValueError, match="already holds a run"):
        RunDir.open(out, CONFIG, resume=False)
    checkpoint.save(out / checkpoint.CHECKPOINT, {"x": torch.zeros(1)})
    with RunDir.open(out, CONFIG, resume=True) as run:
        run.truncate_log(0)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json"]


def test_one_process_cannot_open_a_directory_twice(tmp_path):
    out = tmp_path / "run"
    checkpoint_path = out / checkpoint.CHECKPOINT
    with RunDir.open(out, CONFIG, resume=False):
        checkpoint.save(checkpoint_path, {"x": torch.zeros(1)})
        already = rf"is already open in this process \(pid {os.getpid()}\)"
        with pytest.raises(ValueError, match=already):
            RunDir.open(out, CONFIG, resume=True)
    RunDir.open(out, CONFIG, resume=True).close()  # closed: free again


def test_a_refused_open_leaves_no_lock_behind(tmp_path):
    out = tmp_path / "run"
    RunDir.open(out, CONFIG, resume=False).close()
    before = snapshot(out)
    with pytest.raises(ValueError, match="holds no checkpoint.pt"):
        RunDir.open(out, CONFIG, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        RunDir.open(out, CONFIG, resume=False)
    assert snapshot(out) == before == {"config.json": before["config.json"]}


def test_resume_removes_the_temporaries_a_killed_writer_left(tmp_path):
    out = tmp_path / "run"
    with RunDir.open(out, CONFIG, resume=False) as run:
        checkpoint.save(run.checkpoint_path, {"x": torch.zeros(1)})
    stale = [out / ".checkpoint.pt.k3j2_x.tmp", out / ".metrics.jsonl.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (out / "notes.tmp").write_text("mine")  # not this writer's pattern: kept
    with RunDir.open(out, {**CONFIG}, resume=True) as run:
        run.truncate_log(0)
    assert not any(path.exists() for path in stale)
    assert (out / "notes.tmp").read_text() == "mine"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with RunDir.open(tmp_path / "run", CONFIG, resume=False) as run:
            run.log({"step": 1, "split": "train", "loss": 1.0})
            checkpoint.save(run.checkpoint_path, {"x": torch.zeros(1)})
            run.write_summary({"done": True})
    finally:
        os.umask(previous)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, (name, oct(mode))


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"old")
    path.chmod(0o640)
    checkpoint.save(path, {"x": torch.zeros(1)})
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_resume_that_fails_before_its_first_write_leaves_config_json(tmp_path):
    out = tmp_path / "run"
    with RunDir.open(out, CONFIG, resume=False) as run:
        checkpoint.save(run.checkpoint_path, {"x": torch.zeros(1)})
    before = snapshot(out)
    # The caller loads the checkpoint after opening; if that fails, nothing was written.
    RunDir.open(out, {**CONFIG, "steps": 200}, resume=True, ignore={"steps"}).close()
    assert snapshot(out) == before
    with RunDir.open(out, {**CONFIG, "steps": 200}, resume=True, ignore={"steps"}) as run:
        run.truncate_log(0)
        assert run.read_config()["steps"] == 200

