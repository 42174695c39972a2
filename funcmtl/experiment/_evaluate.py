"""Evaluate K stacked multi-task models on a dataset split, in one vmapped pass per chunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from funcmtl import datasets, ensemble, mtl
from funcmtl._functional import Apply

EVAL_BATCH = 4096  # examples per forward: bounds memory on large splits


def scores(
    tasks: Sequence[mtl.Task], outputs: dict[str, Tensor], targets: dict[str, Tensor]
) -> dict[str, Tensor]:
    """``{"loss": (K,), "task/loss": (K,), "task/metric": (K,)}`` from members' outputs."""

    def one(out: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = mtl.task_losses(tasks, out, targets)
        result = {"loss": losses.sum()}
        result.update({f"{t.name}/loss": losses[i] for i, t in enumerate(tasks)})
        result.update(mtl.task_metrics(tasks, out, targets))
        return result

    return torch.func.vmap(one)(outputs)


@torch.no_grad()
def evaluate(
    apply: Apply, params: dict, buffers: dict, data: datasets.MultiTaskDataset, device
) -> dict[str, Tensor]:
    """:func:`scores` of the members on ``data``."""
    outputs = ensemble.predict(apply, params, buffers, data.inputs.to(device),
                               batch_size=EVAL_BATCH)
    targets = {n: y.to(device) for n, y in data.targets.items()}
    return scores(data.tasks, outputs, targets)


def record(step: int, split: str, values: dict[str, Tensor], tasks) -> dict:
    """A metrics.jsonl record (see :mod:`funcmtl.rundir`): member means of ``values``.

    A task metric is NaN for a member that saw no labelled example of the task; the mean is
    over the members that did (NaN only when none did)."""
    per_task: dict[str, dict[str, float]] = {t.name: {} for t in tasks}
    for name, value in values.items():
        task, sep, metric = name.partition("/")
        if sep and task in per_task:
            per_task[task][metric] = float(value.double().nanmean())
    result = {"step": step, "split": split, "tasks": per_task}
    if "loss" in values:
        result["loss"] = float(values["loss"].double().mean())
    return result
