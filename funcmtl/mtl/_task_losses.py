"""Per-task losses and metrics of a multi-task model's outputs, masked where labels are
missing (see :mod:`funcmtl.mtl._tasks` for the shapes and the masking rules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["task_losses", "task_metrics"]


def _per_task(
    tasks: Sequence[Task],
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None,
) -> Iterator[tuple[Task, Tensor, Tensor, Tensor | None]]:
    """``(task, output, target, mask)`` per task; the mask combines ``mask_value`` and
    ``masks[task.name]``."""
    tasks = check_tasks(tasks)
    for what, values in (("outputs", outputs), ("targets", targets)):
        if not isinstance(values, Mapping):
            raise ValueError(f"`{what}` must be a dict task name -> Tensor; got {type(values)}.")
        absent = [t.name for t in tasks if t.name not in values]
        if absent:
            raise ValueError(
                f"`{what}` has no entry for task {absent[0]!r}; found keys {sorted(values)}."
            )
    for task in tasks:
        _check_output_shape(task, outputs[task.name])
        target = targets[task.name]
        mask = task.label_mask(target)
        given = None if masks is None else masks.get(task.name)
        if given is not None and mask is not None:
            given = given.reshape(given.shape + (1,) * (mask.ndim - given.ndim))
            mask = given & mask if given.dtype == torch.bool else given * mask
        yield task, outputs[task.name], target, given if mask is None else mask


def _check_output_shape(task: Task, output: Tensor) -> None:
    """A head's output must have the task's shape (a static check: fine under vmap)."""
    if not isinstance(output, Tensor) or tuple(output.shape[1:]) == task.output_shape:
        return
    expected = "(N,)" if not task.output_shape else f"(N, {task.output_shape[0]})"
    raise ValueError(
        f"outputs[{task.name!r}] must have shape {expected} for a {task.kind} task with "
        f"output_size={task.output_size}; got {tuple(output.shape)}. A head ending in "
        "nn.Linear(D, 1) gives (N, 1): build it with fm.mtl.output_head(D, task), which "
        "squeezes it."
    )


def _call(fn: Callable[..., Tensor], task: Task, what: str, *args: Tensor, mask=None) -> Tensor:
    try:
        return fn(*args) if mask is None else fn(*args, mask=mask)
    except ValueError as error:
        raise ValueError(f"{what} of task {task.name!r} ({task.kind}): {error}") from error


def task_losses(
    tasks: Sequence[Task],
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    *,
    masks: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Every task's loss, unweighted, as a vector ordered like ``tasks``.

    Pure tensor code: runs under ``vmap`` (over ensemble members or over examples) and is
    the input of per-task gradients (``vjp`` against one-hot cotangents).

    Args:
        tasks: the task specs.
        outputs: ``task name -> model output`` (shapes in the module doc).
        targets: ``task name -> targets``; entries equal to ``mask_value`` are masked out.
        masks: optional ``task name -> (N,) or output-shaped`` bool/float weights,
            combined with the ``mask_value`` mask.

    Returns:
        ``(tasks,)``, each entry a masked mean; 0 for a task with no valid label.
    """
    return torch.stack(
        [
            _call(task.loss, task, "loss", out, tgt, mask=mask)
            for task, out, tgt, mask in _per_task(tasks, outputs, targets, masks)
        ]
    )


def task_metrics(
    tasks: Sequence[Task],
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    *,
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Every task's metrics as ``{"task/metric": 0-dim tensor}`` (vmap-able, see
    :func:`task_losses` for the arguments).

    A task with no labelled example scores ``NaN`` ("not measured", where its loss is 0):
    averages over batches or tasks should skip it (``torch.nanmean``).
    """
    scores = {}
    for task, out, tgt, mask in _per_task(tasks, outputs, targets, masks):
        measured = None if mask is None else (mask != 0).any()
        for name, metric in task.metrics.items():
            score = _call(metric, task, f"metric {name!r}", out, tgt, mask=mask)
            if measured is not None:
                score = torch.where(measured, score, torch.nan)
            scores[f"{task.name}/{name}"] = score
    return scores
