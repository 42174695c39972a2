"""Reading and writing runs: run directories, JSON results, saved models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from funcmtl import checkpoint, mtl, rundir
from funcmtl._functional import Apply
from funcmtl.experiment._build import Setup, build, load_splits, resolve_device
from funcmtl.experiment._config import RESUMABLE_KEYS, TrainConfig, from_json
from funcmtl.experiment._state import initial_tree, total_steps


def open_run_dir(out: Path, config: dict[str, Any], *, resume: bool, tensorboard: bool = False):
    """:meth:`funcmtl.rundir.RunDir.open` with the keys a resumed run may change."""
    return rundir.RunDir.open(
        out, config, resume=resume, ignore=RESUMABLE_KEYS, tensorboard=tensorboard
    )


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write ``data`` as JSON (non-finite floats as "nan"/"inf" strings)."""
    rundir.write_json(path, data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    checkpoint.atomic_write(path, lambda file: file.write(text.encode()))


def write_summary(out: str | os.PathLike, summary: dict[str, Any]) -> None:
    """``out/summary.json``."""
    write_json(Path(out) / rundir.SUMMARY, summary)


def apply_of(setup: Setup) -> Apply:
    """The pure forward function of the run's model."""
    return Apply(setup.module)


def load_run(out: str | os.PathLike, *, device: str = "cpu") -> tuple[TrainConfig, mtl.MTLState]:
    """``(config, state)`` of the run saved in ``out``: its config and its final model (the
    early-stopping best parameters when the run used ``patience``), members stacked."""
    run = rundir.RunDir.existing(out)
    config = from_json(run.read_config())
    splits = load_splits(config)
    setup = build(config, splits, total_steps(config, len(splits.train)))
    like = initial_tree(config, setup, resolve_device(device))
    saved, _ = checkpoint.load(run.checkpoint_path, like)
    return config, saved.best_state


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that reports and writes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
