"""``funcmtl train``: one multi-task model (or ``--members K`` vectorized copies)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys

from funcmtl import experiment, rundir
from funcmtl.experiment import TrainConfig


@dataclasses.dataclass(frozen=True)
class Train(TrainConfig):
    """Train a multi-task model on a dataset and print a per-task table of test metrics.

    Example: funcmtl train --data multidigits --method pcgrad --epochs 5 --out runs/pcgrad
    """

    preset: str | None = None
    """Start from a preset (quick, multidigits, synthetic-mmoe, synthetic-shared); any other
    flag overrides it."""


def summary(result: experiment.RunResult, baselines: dict | None = None) -> dict:
    """summary.json: final per-task validation and test metrics (mean, std, members)."""
    tasks = result.setup.tasks
    out = {
        "steps": result.steps,
        "members": result.config.members,
        "stopped_early": result.stopped_early,
        "skipped_steps": result.skipped_steps,
        "val": experiment.summarize(tasks, result.val),
        "test": experiment.summarize(tasks, result.test),
        "primary_metric": {t.name: experiment.primary_metric(t) for t in tasks},
    }
    if baselines is not None:
        out["single_task"] = baselines
        out["delta_m_percent"] = experiment.delta_m(tasks, out["test"], baselines)
    return out


def single_task_baselines(config: TrainConfig, splits: experiment.Splits) -> dict:
    """Test metrics of one single-task model per task (same config, no run directory)."""
    results = {}
    plain = dataclasses.replace(
        experiment.as_train_config(config), out=None, resume=False, method="mean",
        method_options=(), weighting="equal", tensorboard=False,
    )
    for task in splits.tasks:
        print(f"single-task baseline: {task.name}", file=sys.stderr)
        one = experiment.train(plain, splits=experiment.select_tasks(splits, [task.name]))
        results[task.name] = experiment.summarize(one.setup.tasks, one.test)[task.name]
    return results


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


def holding_out(config: TrainConfig) -> contextlib.AbstractContextManager:
    """Hold ``--out``'s lock for the whole command (the run and the files written after it);
    only the main process of a torchrun job writes there."""
    if config.out is None or not experiment.is_main_process():
        return contextlib.nullcontext()
    return rundir.hold(config.out)


def run(config: Train) -> int:
    with holding_out(config):
        return _run(config)


def _run(config: Train) -> int:
    base = experiment.as_train_config(config)
    result = experiment.train(base)  # Interrupted (SIGINT, SIGTERM) is reported by main
    baselines = single_task_baselines(base, result.splits) if config.baselines else None
    if not result.main:  # ranks > 0 of a torchrun job: rank 0 reports
        return 0
    data = summary(result, baselines)
    if config.out is not None:
        experiment.write_summary(config.out, data)
    print(report(result, data))
    if config.out is not None:
        print(f"run directory: {config.out}")
    return 0
