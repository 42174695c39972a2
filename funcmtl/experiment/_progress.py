"""What a run reports as it trains: the progress bar on stderr, the training records."""

from __future__ import annotations

import sys
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress
from torch import Tensor

from funcmtl.experiment import _evaluate


class Progress:
    """A rich progress bar on a terminal; a plain line every 10% of the run otherwise (logs
    of Slurm jobs, CI and pipes get no control characters)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.start, self.enabled = max(total, 1), start, enabled
        self.began = time.perf_counter()
        self.decile = start * 10 // self.total
        self._bar: _RichProgress | None = None
        if enabled and sys.stderr.isatty():
            self._bar = _RichProgress(
                TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} steps/s"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._task = self._bar.add_task("train", total=total, completed=start, loss=0.0,
                                            rate=0.0)
            self._bar.start()

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        rate = (step - self.start) / max(time.perf_counter() - self.began, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=loss, rate=rate)
        elif step * 10 // self.total > self.decile or step == self.total:
            self.decile = step * 10 // self.total
            print(f"step {step}/{self.total} loss {loss:.4f} {rate:.0f} steps/s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def conflict(cosine: Tensor) -> dict[str, float] | None:
    """Summary of the members' task-gradient cosine matrices ``(K, T, T)``."""
    num_tasks = cosine.shape[-1]
    if num_tasks < 2:
        return None
    off = ~torch.eye(num_tasks, dtype=torch.bool, device=cosine.device)
    pairs = cosine[:, off]
    return {
        "min_cosine": float(pairs.amin(-1).double().mean()),
        "negative_fraction": float((pairs < 0).double().mean()),
    }


def log_train(run_dir, layout, done: int, metrics: dict, tasks) -> None:
    """The training record of step ``done`` (gathered over the ranks' members)."""
    values = {k: v for k, v in metrics.items() if "/" in k}
    values["loss"] = metrics["loss"]
    values.update({f"{t.name}/loss": metrics["losses"][:, i] for i, t in enumerate(tasks)})
    values["cosine"] = metrics["cosine"]
    values = layout.gather(values)
    entry = _evaluate.record(done, "train", values, tasks)
    summary = conflict(values["cosine"])
    if summary is not None:
        entry["conflict"] = summary
    if run_dir is not None:
        run_dir.log(entry)
