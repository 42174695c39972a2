"""Task specifications: what each head predicts, how it is scored and how it is trained.

A :class:`Task` names one output of a multi-task model; its output and target shapes are

- classification: logits ``(N, C)``, int64 class ids ``(N,)``, ``C = output_size``;
- binary: logits and ``{0, 1}`` float targets ``(N,)`` (both ``(N, D)`` for a multi-label
  task with ``output_size = D > 1``);
- regression: predictions and targets ``(N,)`` (both ``(N, D)`` for ``D > 1``).

Missing labels are common in multi-task data (not every example is annotated for every
task). ``mask_value`` marks them in the targets (``-1`` for class ids, ``NaN`` for floats);
:func:`task_losses` and :func:`task_metrics` then mask those entries out, with
``torch.where`` and no branching on values, so both run under ``torch.func.vmap``. A task
with no labelled example in a batch has loss 0 (it adds nothing to training) and metrics
``NaN`` (it was not measured; a 0 would read as a score).

Example:
    >>> from funcmtl.mtl import Task, task_losses, task_weights
    >>> tasks = [
    ...     Task("digit", "classification", 10, mask_value=-1),
    ...     Task("age", "regression", 1, mask_value=float("nan"), weight=0.5),
    ... ]
    >>> outputs = {"digit": torch.zeros(3, 10), "age": torch.zeros(3)}
    >>> y_digit, y_age = torch.tensor([1, -1, 3]), torch.tensor([1.0, 2.0, float("nan")])
    >>> losses = task_losses(tasks, outputs, {"digit": y_digit, "age": y_age})  # (2,)
    >>> losses  # log(10) and the mean of 1² and 2²; the masked labels are left out
    tensor([2.3026, 2.5000])
    >>> (task_weights(tasks) * losses).sum()
    tensor(3.5526)
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from funcmtl import losses as losses_lib
from funcmtl import metrics as metrics_lib
from funcmtl._masking import mask_weights, safe_divide

__all__ = ["Task", "check_tasks", "task_weights"]

Kind = Literal["classification", "binary", "regression"]
LossFn = Callable[..., Tensor]  # (outputs, targets, mask=None) -> 0-dim
MetricFn = Callable[..., Tensor]  # (outputs, targets[, mask=None]) -> 0-dim
KINDS = ("classification", "binary", "regression")
_RESERVED = frozenset(dir(nn.ModuleDict()))


def _binary_accuracy(logits: Tensor, targets: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Fraction of labels with ``(logit > 0) == (target > 0.5)``, over valid elements."""
    weights = mask_weights(mask, logits, logits.dtype, elementwise=True)
    weights = torch.ones_like(logits) if weights is None else weights
    correct = ((logits > 0) == (targets > 0.5)).to(logits.dtype)
    return safe_divide((correct * weights).sum(), weights.sum())


_DEFAULT_LOSS: dict[str, LossFn] = {
    "classification": losses_lib.cross_entropy,
    "binary": losses_lib.binary_cross_entropy,
    "regression": losses_lib.mse,
}
_DEFAULT_METRICS: dict[str, dict[str, MetricFn]] = {
    "classification": {
        "accuracy": metrics_lib.accuracy,
        "f1": functools.partial(metrics_lib.f1, average="macro"),
    },
    "binary": {"accuracy": _binary_accuracy},
    "regression": {"mse": metrics_lib.mse, "mae": metrics_lib.mae, "r2": metrics_lib.r2},
}


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_task_name(name: object, what: str) -> str:
    """``name`` if it can key outputs, metrics (``task/metric``) and an ``nn.ModuleDict``."""
    if not isinstance(name, str) or not name or "." in name or "/" in name:
        raise ValueError(f"{what} must be a non-empty string without '.' or '/'; got {name!r}.")
    if name in _RESERVED:
        raise ValueError(
            f"{what} {name!r} clashes with an nn.ModuleDict attribute; choose another name."
        )
    return name


@dataclass(frozen=True)
class Task:
    """One task of a multi-task model.

    Args:
        name: key of the task in output and target dicts; also a module name inside the
            architectures, so it must be non-empty and contain neither ``.`` nor ``/``.
        kind: ``"classification"`` (softmax over ``output_size`` classes), ``"binary"``
            (sigmoid logits) or ``"regression"``.
        output_size: number of classes, or of binary labels / regression targets.
        loss: ``(outputs, targets, mask=None) -> 0-dim``; default by kind:
            :func:`funcmtl.losses.cross_entropy`, :func:`~funcmtl.losses.binary_cross_entropy`
            or :func:`~funcmtl.losses.mse`.
        metrics: ``name -> (outputs, targets) -> 0-dim``; a metric must also take
            ``mask=`` when the task has a ``mask_value``. Default by kind: ``accuracy`` and
            macro ``f1`` (classification); ``accuracy`` at threshold 0 (binary); ``mse``,
            ``mae``, ``r2`` (regression).
        weight: the task's weight in a weighted sum of losses (see :func:`task_weights`).
        mask_value: a target value meaning "label missing" (``NaN`` allowed for binary and
            regression targets); those entries are masked out of losses and metrics.
    """

    name: str
    kind: Kind
    output_size: int = 1
    loss: LossFn | None = field(default=None, hash=False)
    metrics: Mapping[str, MetricFn] | None = field(default=None, hash=False)
    weight: float = 1.0
    mask_value: float | int | None = None

    def __post_init__(self) -> None:
        where = f"Task {self.name!r}"
        check_task_name(self.name, "Task `name`")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: `kind` must be one of {KINDS}; got {self.kind!r}.")
        size, least = self.output_size, 2 if self.kind == "classification" else 1
        if not _is_real(size) or not isinstance(size, int) or size < least:
            raise ValueError(
                f"{where}: `output_size` must be an int >= {least} for a {self.kind} task; "
                f"got {size!r}."
            )
        if self.loss is None:
            object.__setattr__(self, "loss", _DEFAULT_LOSS[self.kind])
        elif not callable(self.loss):
            raise ValueError(
                f"{where}: `loss` must be callable (outputs, targets, mask=None); "
                f"got {type(self.loss).__name__}."
            )
        metrics = _DEFAULT_METRICS[self.kind] if self.metrics is None else self.metrics
        if not isinstance(metrics, Mapping) or not all(
            isinstance(k, str) and "/" not in k and callable(v) for k, v in metrics.items()
        ):
            raise ValueError(
                f"{where}: `metrics` must map names without '/' to callables; got {metrics!r}."
            )
        object.__setattr__(self, "metrics", types.MappingProxyType(dict(metrics)))
        weight, mask_value = self.weight, self.mask_value
        if not _is_real(weight) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{where}: `weight` must be a finite float >= 0; got {weight!r}.")
        if mask_value is not None and not _is_real(mask_value):
            raise ValueError(
                f"{where}: `mask_value` must be None, an int or a float; got {mask_value!r}."
            )
        if (
            self.kind == "classification"
            and mask_value is not None
            and not (float(mask_value).is_integer())
        ):
            raise ValueError(
                f"{where}: `mask_value` of a classification task must be an integer "
                f"class id such as -1 (labels are int64); got {mask_value!r}."
            )

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one example's output: ``(C,)``, ``()`` or ``(D,)`` (see module doc)."""
        if self.kind == "classification" or self.output_size > 1:
            return (self.output_size,)
        return ()

    def label_mask(self, targets: Tensor) -> Tensor | None:
        """``bool`` mask of the targets that are present, or ``None`` without ``mask_value``."""
        if self.mask_value is None:
            return None
        if isinstance(self.mask_value, float) and math.isnan(self.mask_value):
            return ~torch.isnan(targets)
        return targets != self.mask_value


def check_tasks(tasks: Sequence[Task]) -> tuple[Task, ...]:
    """Check a non-empty sequence of :class:`Task` with unique names; return it as a tuple."""
    if isinstance(tasks, Task) or not isinstance(tasks, Sequence) or len(tasks) == 0:
        raise ValueError(f"`tasks` must be a non-empty sequence of Task; got {tasks!r}.")
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise ValueError(f"`tasks[{i}]` must be a Task; got {type(task).__name__}.")
    names = [task.name for task in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"`tasks` must have unique names; found duplicates {duplicates}.")
    return tuple(tasks)


def task_weights(tasks: Sequence[Task], *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The tasks' ``weight`` fields as a ``(tasks,)`` tensor, ordered like ``tasks``."""
    tasks = check_tasks(tasks)
    return torch.tensor([task.weight for task in tasks], dtype=dtype, device=device)
