"""Hostile input to ``funcmtl``: every case exits 2 with one line and loses nothing.

Concurrent runs on one ``--out``, refused resumes, broken data files, a full disk and a
read-only directory (simulated: the tests may run as root, whom ``chmod`` does not stop).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli_train import FAST, _files

from funcmtl import checkpoint
from funcmtl_cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(capsys, *needles: str) -> str:
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    # The one line after the progress lines of the steps that ran, if any.
    lines = printed.strip().splitlines()
    err = "\n".join(line for line in lines if not re.match(r"step \d+/\d+ loss ", line))
    assert err.startswith("funcmtl: error:") and "\n" not in err, printed
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


class WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# --- 14: one run per directory ----------------------------------------------------------


def _wait_for_training(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.stat().st_size > 0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the first run never started training: {proc.communicate()}")
        time.sleep(0.05)


def test_a_second_run_on_a_busy_out_is_refused_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    long_run = [*FAST, "--steps", "100000", "--checkpoint-every", "100000", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "funcmtl_cli.main", "train", *long_run],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_training(out, first)
        config = (out / "config.json").read_bytes()
        for extra in (["--resume"], []):
            assert main(["train", *long_run, *extra]) == 2
            _one_line_error(capsys, f"{out} is in use by another run (pid {first.pid})")
        assert (out / "config.json").read_bytes() == config
        deadline = time.monotonic() + 120  # (on a busy machine the first epoch takes a while)
        while '"split": "val"' not in (out / "metrics.jsonl").read_text():
            assert first.poll() is None and time.monotonic() < deadline, "no val record came"
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "val"):
        steps = [r["step"] for r in records if r["split"] == split]
        assert steps and steps == sorted(set(steps))  # each step once, in order
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- 15: a refused --resume touches nothing ----------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *FAST, "--steps", "5", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> bytes:
    """The checkpoint of another configuration (another --hidden)."""
    out = tmp_path_factory.mktemp("other") / "run"
    args = [*FAST, "--steps", "5", "--out", str(out)]
    args[1] = "16"
    assert main(["train", *args]) == 0
    return (out / checkpoint.CHECKPOINT).read_bytes()


def _refused_checkpoints(path: Path, good: bytes, other: bytes) -> dict[str, bytes]:
    marker = path.parent / "ran"
    evil = path.parent / "evil.pt"
    torch.save({"format": "funcmtl.checkpoint", "version": 1, "structure": [],
                "leaves": [WritesMarker(marker)], "metadata": {}}, evil)
    return {"truncated": good[: len(good) // 2], "malicious": evil.read_bytes(),
            "mismatched": other}


@pytest.mark.parametrize("kind", ["truncated", "malicious", "mismatched"])
def test_a_refused_resume_leaves_the_run_directory_untouched(
    kind, finished_run, other_checkpoint, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    good = (finished_run / checkpoint.CHECKPOINT).read_bytes()
    (out / checkpoint.CHECKPOINT).write_bytes(
        _refused_checkpoints(tmp_path / "x.pt", good, other_checkpoint)[kind]
    )
    before = _files(out)
    assert main(["train", *FAST, "--steps", "5", "--out", str(out), "--resume"]) == 2
    _one_line_error(capsys, "checkpoint")
    assert _files(out) == before
    assert not (tmp_path / "ran").exists()


# --- 16: duplicate task names, a task without labels -------------------------------------


@pytest.fixture
def table_csv(tmp_path) -> Path:
    rows = [["a", "b", "label", "value"]]
    rows += [[i * 0.1, (i % 3) * 1.0, i % 2, i * 0.5] for i in range(40)]
    return _write_csv(tmp_path / "data.csv", rows)


def test_duplicate_task_names_are_refused(table_csv, capsys) -> None:
    code = main(["train", "--data", str(table_csv), "--targets", "cls=classification:label",
                 "cls=regression:value", "--steps", "2", "--hidden", "8"])
    assert code == 2
    _one_line_error(capsys, "'cls'", "twice")


def test_a_target_column_without_any_label_is_refused(tmp_path, capsys) -> None:
    path = _write_csv(tmp_path / "nolabel.csv",
                      [["a", "b", "label"], *[[i * 0.1, i % 3, ""] for i in range(40)]])
    for spec in ("label=classification", "label=regression", "label=binary"):
        assert main(["train", "--data", str(path), "--targets", spec, "--steps", "2",
                     "--hidden", "8"]) == 2
        _one_line_error(capsys, "'label'", "no label")


# --- 19: one line, not a traceback -------------------------------------------------------


def _data_files(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (file, --targets/--inputs flags, a word the error must contain)."""
    good = tmp_path / "good.pt"
    torch.save({"x": torch.zeros(40, 2), "label": torch.zeros(40)}, good)
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save({"x": torch.zeros(40, 2), "label": WritesMarker(tmp_path / "ran")},
               tmp_path / "evil.pt")
    (tmp_path / "header.csv").write_text("a,b,label\n")
    import numpy as np

    np.savez(tmp_path / "none.npz")
    (tmp_path / "zero.npz").write_bytes(b"")
    (tmp_path / "long.csv").write_text("a,label\n" + "1" * 140_000 + ",1\n" + "2,0\n" * 20)
    rows = [[i * 0.1, i % 2] for i in range(40)]
    rows[3][1] = 300000
    _write_csv(tmp_path / "stray.csv", [["a", "label"], *rows])
    pt = ["--inputs", "x", "--targets", "label=classification"]
    table = ["--targets", "label=classification"]
    return {
        "truncated pt": (tmp_path / "cut.pt", pt, "corrupt or truncated"),
        "malicious pt": (tmp_path / "evil.pt", pt, "refused"),
        "csv header only": (tmp_path / "header.csv", table, "no data rows"),
        "npz without arrays": (tmp_path / "none.npz", table, "no arrays"),
        "empty npz file": (tmp_path / "zero.npz", table, "not a readable .npz"),
        "long csv cell": (tmp_path / "long.csv", table, "line 2"),
        "stray label": (tmp_path / "stray.csv", table, "300000"),
    }


CASES = ["truncated pt", "malicious pt", "csv header only", "npz without arrays",
         "empty npz file", "long csv cell", "stray label"]


@pytest.mark.parametrize("case", CASES)
def test_broken_data_files_exit_2_with_one_line(case, tmp_path, capsys) -> None:
    path, flags, needle = _data_files(tmp_path)[case]
    before = _files(tmp_path)
    assert main(["train", "--data", str(path), *flags, "--steps", "2", "--hidden", "8"]) == 2
    err = _one_line_error(capsys, path.stem, needle)
    assert "weights_only" not in err
    assert _files(tmp_path) == before  # nothing ran, nothing was written


def test_toy_methods_with_nothing_after_it_exits_2(capsys) -> None:
    assert main(["toy", "--methods", "--steps", "3"]) == 2
    _one_line_error(capsys, "--methods")


def test_toy_out_that_is_a_directory_exits_2_before_running(tmp_path, capsys) -> None:
    assert main(["toy", "--steps", "3", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, str(tmp_path), "directory")
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""  # refused before running anything


def _failing_write(monkeypatch, error: int, after: int = 0) -> None:
    """Make the run directory's atomic writes fail with ``error`` from write ``after`` on."""
    real = torch.save
    calls = {"n": 0}

    def save(obj, file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            file.write(b"half a checkpoint")
            raise OSError(error, os.strerror(error))
        return real(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_exits_2_naming_the_file_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    args = ["train", *FAST, "--steps", "10", "--checkpoint-every", "5", "--out", str(out)]
    _failing_write(monkeypatch, errno.ENOSPC, after=1)  # the checkpoint of step 5 is written
    assert main(args) == 2
    _one_line_error(capsys, "disk is full", str(out / checkpoint.CHECKPOINT))
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json",
                                                     "metrics.jsonl"]
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") and json.loads(line) for line in lines)
    assert main([*args, "--resume"]) == 0  # the step-5 checkpoint is intact


def test_a_read_only_out_exits_2_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() != 0:
        parent.chmod(0o555)
    else:  # root writes anywhere: simulate the refusal the kernel gives everyone else
        real = os.mkdir

        def mkdir(path, *args, **kwargs):
            if Path(path).parent == parent:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        assert main(["train", *FAST, "--steps", "2", "--out", str(parent / "run")]) == 2
        _one_line_error(capsys, str(parent / "run"), "ermission denied")
    finally:
        parent.chmod(0o755)
    assert list(parent.iterdir()) == []
