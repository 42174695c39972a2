"""``funcmtl train``: one multi-task model (or ``--members K`` vectorized copies)."""

from __future__ import annotations

import dataclasses

from funcmtl import experiment
from funcmtl.experiment import TrainConfig, _config, _io

from ._common import holding_out


@dataclasses.dataclass(frozen=True)
class Train(TrainConfig):
    """Train a multi-task model on a dataset and print a per-task table of test metrics.

    Example: funcmtl train --data multidigits --method pcgrad --epochs 5 --out runs/pcgrad
    """

    preset: str | None = None
    """Start from a preset (quick, multidigits, synthetic-mmoe, synthetic-shared); any other
    flag overrides it."""


def report(result: experiment.RunResult, data: dict) -> str:
    """The per-task table (and Δm%) printed at the end of a run."""
    lines = [
        f"{result.config.data}: {len(result.splits.train)} train / {len(result.splits.val)} val"
        f" / {len(result.splits.test)} test examples; arch {result.config.arch}, method "
        f"{result.config.method}, {result.steps} steps"
        + (f", {result.config.members} members (mean ± std)" if result.config.members > 1
           else "")
        + (" (stopped early)" if result.stopped_early else ""),
        "",
        "test metrics:",
        experiment.task_table(result.setup.tasks, data["test"], result.config.members,
                              data.get("single_task")),
    ]
    if "delta_m_percent" in data:
        lines.append(f"Δm% vs single-task models: {data['delta_m_percent']:+.2f} "
                     "(lower is better)")
    if result.skipped_steps:
        lines.append(f"skipped {result.skipped_steps} steps with non-finite losses")
    return "\n".join(lines)


def run(config: Train) -> int:
    with holding_out(config):
        return _run(config)


def _run(config: Train) -> int:
    base = _config.as_train_config(config)
    result = experiment.train(base)  # Interrupted (SIGINT, SIGTERM) is reported by main
    baselines = (experiment.single_task_baselines(base, result.splits) if config.baselines
                 else None)
    if not result.main:  # ranks > 0 of a torchrun job: rank 0 reports
        return 0
    data = experiment.run_summary(result, baselines)
    if config.out is not None:
        _io.write_summary(config.out, data)
    print(report(result, data))
    if config.out is not None:
        print(f"run directory: {config.out}")
    return 0
