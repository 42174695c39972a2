"""Scaling transforms: by a constant, by a schedule of the step count, by a learning rate."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from funcmtl.optim import _leafwise
from funcmtl.optim._base import (
    GradientTransformation,
    PyTree,
    ScalarOrSchedule,
    Schedule,
    stateless,
    zero_count,
)
from funcmtl.optim._checks import check_hyperparameter, flatten_updates


class ScaleByScheduleState(NamedTuple):
    """The step counter a schedule is evaluated at."""

    count: Tensor  # shape=(), int64: number of updates done so far


def scale(factor: float | Tensor) -> GradientTransformation:
    """Multiply every update by ``factor`` (a number or a 0-dim tensor; may be negative).

    Example:
        >>> opt = fm.optim.chain(fm.optim.scale_by_adam(), fm.optim.scale(-1e-3))
    """
    check_hyperparameter("factor", factor)

    def scale_updates(updates: PyTree, params: PyTree | None) -> PyTree:
        del params
        gs, rebuild, _ = flatten_updates(updates, "scale")
        return rebuild(_leafwise.mul(gs, factor))

    return stateless(scale_updates)


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """Multiply the updates by ``schedule(count)``, where ``count`` counts previous updates.

    The first update uses ``schedule(0)``, like a ``torch.optim.lr_scheduler`` before its
    first ``step()``.
    """
    if not callable(schedule):
        raise TypeError(f"`schedule` must be a function count -> value; got {schedule!r}.")

    def init_fn(params: PyTree) -> ScaleByScheduleState:
        return ScaleByScheduleState(count=zero_count(params))

    def update_fn(
        updates: PyTree, state: ScaleByScheduleState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByScheduleState]:
        del params
        gs, rebuild, _ = flatten_updates(updates, "scale_by_schedule")
        factor = schedule(state.count)
        return rebuild(_leafwise.mul(gs, factor)), ScaleByScheduleState(state.count + 1)

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiply the updates by ``-learning_rate`` (descent), or ``+learning_rate``.

    Args:
        learning_rate: a positive number, a 0-dim tensor (e.g. one entry of a vmapped sweep)
            or a schedule ``count -> value``.
        flip_sign: multiply by ``-learning_rate`` so that :func:`apply_updates` descends.

    Returns:
        :func:`scale` for a constant, :func:`scale_by_schedule` (with a step counter in its
        state) for a schedule.
    """
    check_hyperparameter("learning_rate", learning_rate, low=0, low_open=True, or_schedule=True)
    sign = -1 if flip_sign else 1
    if callable(learning_rate) and not isinstance(learning_rate, Tensor):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)
