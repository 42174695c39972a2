"""Ensemble prediction and evaluation: every member at once, then combined."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from funcmtl import train
from funcmtl.ensemble._combine import mean_binary_logits, mean_log_probs
from funcmtl.mtl._task_losses import task_metrics
from funcmtl.mtl._tasks import Task, check_tasks

PyTree = Any
Params = dict[str, Tensor]
Metric = Callable[[Any, Any], Tensor]
Combine = Callable[[Tensor], Tensor]


def predict(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    inputs: PyTree,
    *,
    batch_size: int = 1024,
    chunk_size: int | None = None,
) -> Any:
    """Every member's eval-mode outputs: ``(K, N, ...)`` (or a dict of such, per task).

    Args:
        apply: the single-model function from :func:`funcmtl.functional`.
        params, buffers: stacked, leading member axis ``K``.
        inputs: pytree with a leading example axis ``N`` (shared by all members).
        batch_size: examples per forward pass.
        chunk_size: members per vmap chunk (bounds memory).
    """
    every_member = torch.func.vmap(
        lambda p, b, x: apply(p, b, x), in_dims=(0, 0, None), chunk_size=chunk_size
    )
    return train.predict(
        every_member, params, buffers, inputs, batch_size=batch_size, example_axis=1
    )


def member_scores(metric: Metric, outputs: Any, targets: Any) -> Tensor:
    """``metric`` for each member: outputs ``(K, N, ...)`` (or ``{task: (K, N, ...)}``) ->
    scores ``(K,)`` (or a dict of them, for a metric that returns a dict)."""
    return torch.func.vmap(metric, in_dims=(0, None))(outputs, targets)


def _by_kind(kind: str) -> Callable[[Tensor], Tensor]:
    if kind == "classification":
        return mean_log_probs
    return mean_binary_logits if kind == "binary" else lambda p: p.mean(0)


def _combine_tasks(
    outputs: dict[str, Tensor],
    combine: Combine | Mapping[str, Combine] | None,
    tasks: Sequence[Task] | None,
) -> dict[str, Tensor]:
    """Each task's combined prediction: ``combine[t]``, else the default of its kind."""
    if combine is None and tasks is None:
        raise ValueError(
            f"multi-task outputs {sorted(outputs)} need `tasks=` (each task is combined by "
            "its kind) or a `combine` per task; got neither."
        )
    kinds = {t.name: t.kind for t in tasks or ()}
    combined = {}
    for name, out in outputs.items():
        if isinstance(combine, Mapping):
            if name not in combine:
                raise ValueError(
                    f"`combine` has no entry for task {name!r}; found {sorted(combine)}."
                )
            combined[name] = combine[name](out)
        elif combine is not None:
            combined[name] = combine(out)
        elif name in kinds:
            combined[name] = _by_kind(kinds[name])(out)
        else:
            raise ValueError(f"`tasks` has no task {name!r}; found {sorted(kinds)}.")
    return combined


def evaluate(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    dataset: tuple[PyTree, Any],
    metrics: dict[str, Metric] | None = None,
    *,
    tasks: Sequence[Task] | None = None,
    combine: Combine | Mapping[str, Combine] | None = None,
    batch_size: int = 1024,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """The ensemble's metrics next to the mean member's, on all of ``dataset = (x, y)``.

    Returns ``{"ensemble_<name>": ..., "member_<name>": ...}``, where the ensemble scores
    ``combine(outputs)`` and the member value is the mean over members.

    One output per model: ``combine`` maps ``(K, N, ...)`` to ``(N, ...)``; by default
    :func:`mean_log_probs` (the log of the mean probability, for classifiers; use
    ``lambda p: p.mean(0)`` for regression).

    Multi-task members (``{task: (K, N, ...)}``, targets ``y = {task: targets}``): each task
    is combined by ``combine[task]`` (or one ``combine`` for all), by default by its kind in
    ``tasks`` (:func:`mean_log_probs`, :func:`mean_binary_logits`, the mean for regression).
    Without ``metrics``, the scores are the tasks' own, named ``"<task>/<metric>"``
    (:func:`funcmtl.mtl.task_metrics`); a metric in ``metrics`` takes the dicts.

    Example:
        >>> tasks = [fm.mtl.Task("digit", "classification", 10), fm.mtl.Task("age", "regression")]
        >>> net = fm.mtl.hard_sharing_mlp(8, (16,), tasks)
        >>> apply, _, _ = fm.functional(net)
        >>> params, buffers = fm.ensemble.init_members(net, fm.random.key(0), 4)
        >>> y = {"digit": torch.randint(0, 10, (32,)), "age": torch.randn(32)}
        >>> scores = fm.ensemble.evaluate(apply, params, buffers, (torch.randn(32, 8), y),
        ...                               tasks=tasks)
        >>> sorted(scores)[:3]
        ['ensemble_age/mae', 'ensemble_age/mse', 'ensemble_age/r2']
    """
    x, y = dataset
    if metrics is None and tasks is None:
        raise ValueError("`evaluate` needs `metrics` or `tasks` (for their metrics); got neither.")
    if metrics is None:
        checked = check_tasks(tasks)
        metrics = {"": lambda outputs, targets: task_metrics(checked, outputs, targets)}
    outputs = predict(apply, params, buffers, x, batch_size=batch_size, chunk_size=chunk_size)
    if isinstance(outputs, Mapping):
        combined = _combine_tasks(outputs, combine, tasks)
    else:
        combined = (combine or mean_log_probs)(outputs)
    scores = {}
    for name, metric in metrics.items():
        ensemble, members = metric(combined, y), member_scores(metric, outputs, y)
        # A metric may return several scores ({name: value}): task_metrics does.
        named = ensemble.items() if isinstance(ensemble, Mapping) else [(name, ensemble)]
        for key, value in named:
            member = members[key] if isinstance(members, Mapping) else members
            scores[f"ensemble_{key}"] = float(value)
            scores[f"member_{key}"] = float(member.mean())
    return scores
