"""What a run is measured against and what it reports: single-task baselines, Δm%, and the
contents of ``summary.json``."""

from __future__ import annotations

import dataclasses
import sys

from funcmtl.experiment._build import Splits, select_tasks
from funcmtl.experiment._config import TrainConfig, as_train_config
from funcmtl.experiment._loop import RunResult, train
from funcmtl.experiment._report import delta_m, primary_metric, summarize


def single_task_baselines(config: TrainConfig, splits: Splits) -> dict:
    """``{task: test metrics}`` of one single-task model per task: the same config with the
    plain summed loss, no run directory — the reference of Δm% (Maninis et al., 2019)."""
    results = {}
    plain = dataclasses.replace(
        as_train_config(config), out=None, resume=False, method="mean", method_options=(),
        weighting="equal", weighting_options=(), tensorboard=False,
    )
    for task in splits.tasks:
        print(f"single-task baseline: {task.name}", file=sys.stderr)
        one = train(plain, splits=select_tasks(splits, [task.name]))
        results[task.name] = summarize(one.setup.tasks, one.test)[task.name]
    return results


def run_summary(result: RunResult, baselines: dict | None = None) -> dict:
    """summary.json: final per-task validation and test metrics (mean, std, members), and
    with ``baselines`` the single-task metrics and Δm%."""
    tasks = result.setup.tasks
    out = {
        "steps": result.steps,
        "members": result.config.members,
        "stopped_early": result.stopped_early,
        "skipped_steps": result.skipped_steps,
        "val": summarize(tasks, result.val),
        "test": summarize(tasks, result.test),
        "primary_metric": {t.name: primary_metric(t) for t in tasks},
    }
    if baselines is not None:
        out["single_task"] = baselines
        out["delta_m_percent"] = delta_m(tasks, out["test"], baselines)
    return out
