"""funcmtl.rundir: run directories that refuse to clobber, resume exactly and log valid JSON."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from funcmtl import checkpoint
from funcmtl.rundir import RunDir

CONFIG = {"lr": 0.01, "steps": 100, "tasks": ["a", "b"], "model": {"width": 8}, "out": "runs/x"}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")}


def record(step: int, split: str = "train", loss: float = 1.0) -> dict:
    return {
        "step": step,
        "split": split,
        "loss": loss,
        "tasks": {"a": {"loss": loss / 2, "accuracy": 0.5}, "b": {"loss": loss / 2}},
        "conflict": {"min_cosine": -0.1, "negative_fraction": 0.5},
    }


def started(tmp_path: Path, *, with_checkpoint: bool = True) -> Path:
    out = tmp_path / "run"
    with RunDir.open(out, CONFIG, resume=False) as run:
        run.log(record(1))
        if with_checkpoint:
            checkpoint.save(run.checkpoint_path, {"x": torch.zeros(2)})
    return out


def test_new_run_writes_sorted_config(tmp_path):
    out = tmp_path / "new" / "run"
    config = {**CONFIG, "path": Path("data/x"), "inf": float("inf")}
    with RunDir.open(out, config, resume=False) as run:
        assert run.checkpoint_path == out / "checkpoint.pt"
        assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json"]
        text = (out / "config.json").read_text()
        assert json.loads(text) == run.read_config()
        assert run.read_config()["path"] == "data/x" and run.read_config()["inf"] == "inf"
        assert list(json.loads(text)) == sorted(config) and text.startswith("{\n  ")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # the lock is gone
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir.open(empty, CONFIG, resume=False).close()
    assert (empty / "config.json").is_file()


def test_existing_run_is_refused_without_resume(tmp_path):
    out = started(tmp_path)
    before = snapshot(out)
    with pytest.raises(ValueError) as error:
        RunDir.open(out, CONFIG, resume=False)
    message = str(error.value)
    assert "already holds a run (config.json)" in message and "pass --resume" in message
    assert "\n" not in message
    assert snapshot(out) == before


def test_unrelated_directory_is_refused(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8 not a run")
    before = snapshot(out)
    for resume in (False, True):
        with pytest.raises(ValueError, match="is not empty and holds no funcmtl run; choose an"):
            RunDir.open(out, CONFIG, resume=resume)
    assert snapshot(out) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        RunDir.open(tmp_path / "file", CONFIG, resume=False)


def test_resume_needs_a_run_and_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="holds no run; drop --resume"):
        RunDir.open(tmp_path / "nothing", CONFIG, resume=True)
    assert not (tmp_path / "nothing").exists()
    out = started(tmp_path, with_checkpoint=False)
    before = snapshot(out)
    with pytest.raises(ValueError, match="holds no checkpoint.pt"):
        RunDir.open(out, CONFIG, resume=True)
    assert snapshot(out) == before


def test_resume_with_a_different_config_names_the_key(tmp_path):
    out = started(tmp_path)
    before = snapshot(out)
    with pytest.raises(ValueError, match=r"config key 'lr' was 0\.01 in the run and is 0\.1 now"):
        RunDir.open(out, {**CONFIG, "lr": 0.1}, resume=True)
    with pytest.raises(ValueError, match=r"config key 'model\.width' was 8 .* is 16"):
        RunDir.open(out, {**CONFIG, "model": {"width": 16}}, resume=True)
    with pytest.raises(ValueError, match=r"config key 'seed' was '<missing>' .* is 1"):
        RunDir.open(out, {**CONFIG, "seed": 1}, resume=True)
    assert snapshot(out) == before


def test_resume_accepts_ignored_keys_and_records_them(tmp_path):
    out = started(tmp_path)
    config = {**CONFIG, "steps": 200, "out": "elsewhere", "device": "cuda"}
    with pytest.raises(ValueError, match="config key 'device' was '<missing>'"):
        RunDir.open(out, config, resume=True)  # nothing may change unless the caller says so
    with RunDir.open(out, config, resume=True, ignore={"steps", "out", "device"}) as run:
        run.truncate_log(1)  # the first write of a resumed run records its config
        assert run.read_config()["steps"] == 200
        assert run.records() == [record(1)]
    with RunDir.open(out, {**config, "lr": 0.5}, resume=True,
                     ignore={"lr", "steps", "out", "device"}) as run:
        run.log(record(2))
        assert run.read_config()["lr"] == 0.5
    changed = {**config, "lr": 0.5, "model": {"width": 3}}
    with RunDir.open(out, changed, resume=True,
                     ignore={"model.width", "out", "device"}) as run:
        run.write_summary({"done": True})
    assert RunDir.existing(out).read_config()["model"] == {"width": 3}


def test_log_round_trips_tensors_and_non_finite_values(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, resume=False) as run:
        run.log(
            {
                "step": torch.tensor(3),
                "split": "val",
                "loss": torch.tensor(float("nan")),
                "tasks": {"a": {"loss": torch.tensor(0.25), "mae": float("inf")}},
                "member": torch.tensor(2),
            }
        )
        run.log(record(4, loss=-math.inf))
        lines = run.metrics_path.read_text().splitlines()
        assert len(lines) == 2
        parsed = [json.loads(line, parse_constant=pytest.fail) for line in lines]
        assert parsed[0]["loss"] == "nan" and parsed[0]["tasks"]["a"]["mae"] == "inf"
        first, second = run.records()
        assert first["step"] == 3 and isinstance(first["step"], int) and first["member"] == 2
        assert math.isnan(first["loss"]) and first["tasks"]["a"] == {"loss": 0.25, "mae": math.inf}
        assert second["loss"] == -math.inf and second["conflict"]["negative_fraction"] == 0.5
        assert [r["step"] for r in run.records("val")] == [3]


def test_log_rejects_records_without_step_or_split(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, resume=False) as run:
        for bad in ({"split": "train"}, {"step": 1.5, "split": "train"}, {"step": 1, "split": "x"}):
            with pytest.raises(ValueError, match="needs an int 'step' and a 'split'"):
                run.log(bad)
        with pytest.raises(ValueError, match=r"record\.extra is a object"):
            run.log({"step": 1, "split": "train", "extra": object()})
        assert run.records() == []


def test_truncate_log_keeps_exactly_the_steps_up_to_the_checkpoint(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, resume=False) as run:
        for step in range(1, 11):
            run.log(record(step))
            if step % 3 == 0:
                run.log(record(step, split="val"))
        lines = run.metrics_path.read_text().splitlines(keepends=True)
        # A crash mid-write leaves half a line; truncation drops it with the later steps.
        with open(run.metrics_path, "a") as file:
            file.write('{"step": 11, "spl')
        assert [r["step"] for r in run.records()][-1] == 10
        run.truncate_log(6)
        kept = [line for line in lines if json.loads(line)["step"] <= 6]
        assert run.metrics_path.read_text() == "".join(kept)
        assert [(r["step"], r["split"]) for r in run.records()][-3:] == [
            (5, "train"),
            (6, "train"),
            (6, "val"),
        ]
        run.log(record(7))
        assert [r["step"] for r in run.records()][-1] == 7
        assert [p.name for p in run.out.iterdir() if p.name.endswith(".tmp")] == []


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, resume=False) as run:
        run.log(record(1))
        with open(run.metrics_path, "a") as file:
            file.write("not json\n")
        run.log(record(2))
        with pytest.raises(ValueError, match="line 2 is not a JSON record"):
            run.records()


def test_summary_round_trip_and_existing(tmp_path):
    out = started(tmp_path)
    run = RunDir.existing(out)
    with pytest.raises(ValueError, match="has no summary.json yet"):
        run.read_summary()
    run.write_summary({"best_val_loss": torch.tensor(0.5), "final": float("nan"), "steps": 1})
    summary = run.read_summary()
    assert summary["best_val_loss"] == 0.5 and math.isnan(summary["final"])
    assert json.loads((out / "summary.json").read_text())["final"] == "nan"
    with pytest.raises(ValueError, match="holds no funcmtl run"):
        RunDir.existing(tmp_path / "missing")


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=r"pip install 'funcmtl\[tensorboard\]'"):
        RunDir.open(tmp_path / "run", CONFIG, resume=False, tensorboard=True)
    assert not (tmp_path / "run").exists()


def test_tensorboard_receives_every_scalar(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunDir.open(tmp_path / "run", CONFIG, resume=False, tensorboard=True) as run:
        run.log(record(5))
        run.log({**record(6, split="val"), "member": 1})
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/tasks/a/accuracy", "train/conflict/min_cosine"} <= tags
    assert "val/member_1/tasks/b/loss" in tags
    assert [(e.step, e.value) for e in events.Scalars("train/tasks/a/loss")] == [(5, 0.5)]
