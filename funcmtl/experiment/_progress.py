"""What a run reports as it trains: the progress line on stderr, the training records."""

from __future__ import annotations

import sys
import time

import torch
from torch import Tensor

from funcmtl.experiment import _evaluate


class Progress:
    """One self-overwriting line on a terminal; a line every 10% otherwise."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.start, self.enabled = total, start, enabled
        self.tty = sys.stderr.isatty()
        self.began = time.perf_counter()
        self.shown = -1.0
        self.decile = start * 10 // max(total, 1)

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (step - self.start) / max(now - self.began, 1e-9)
        width = 30
        filled = width * step // max(self.total, 1)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} "
            f"loss {loss:.4f} {rate:.0f} steps/s"
        )
        if self.tty:
            if now - self.shown > 0.1 or step == self.total:
                print("\r" + line, end="", file=sys.stderr, flush=True)
                self.shown = now
        elif step * 10 // max(self.total, 1) > self.decile or step == self.total:
            self.decile = step * 10 // max(self.total, 1)
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


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
