"""Schedules: pure tensor functions ``count -> value`` of the int64 step counter.

A schedule is evaluated at ``count`` = the number of updates done before this one, so the
first update uses ``schedule(0)``, like a ``torch.optim.lr_scheduler`` before its first
``step()``. Schedules use ``torch.where``/``clamp`` instead of Python branches, so they run
under ``vmap`` (a batch of counters, or a sweep over a tensor ``init_value``) and on any
device. They compute in float64 and return the default float dtype (or the dtype of a
tensor hyperparameter).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from funcmtl.optim._base import Schedule
from funcmtl.optim._checks import check_hyperparameter


def _check_steps(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer ≥ {minimum}; got {value!r}.")


def _output(value: Tensor, *hyperparameters: float | Tensor) -> Tensor:
    dtype = next(
        (h.dtype for h in hyperparameters if isinstance(h, Tensor) and h.is_floating_point()),
        torch.get_default_dtype(),
    )
    return value.to(dtype)


def _steps(count: Tensor) -> Tensor:
    return count.to(torch.float64)


def constant_schedule(value: float | Tensor) -> Schedule:
    """``value`` at every step."""
    check_hyperparameter("value", value)

    def schedule(count: Tensor) -> Tensor:
        return _output(torch.zeros_like(_steps(count)) + value, value)

    return schedule


def linear_schedule(
    init_value: float | Tensor, end_value: float | Tensor, transition_steps: int
) -> Schedule:
    """Linear from ``init_value`` at step 0 to ``end_value`` at ``transition_steps``, then flat.

    ``value(t) = init + (end - init) · min(t / transition_steps, 1)``
    """
    check_hyperparameter("init_value", init_value)
    check_hyperparameter("end_value", end_value)
    _check_steps("transition_steps", transition_steps, 1)

    def schedule(count: Tensor) -> Tensor:
        fraction = torch.clamp(_steps(count) / transition_steps, 0.0, 1.0)
        return _output(init_value + (end_value - init_value) * fraction, init_value, end_value)

    return schedule


def linear_warmup_schedule(
    peak_value: float | Tensor, warmup_steps: int, init_value: float | Tensor = 0.0
) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then flat.

    Example:
        >>> opt = fm.optim.adam(fm.optim.linear_warmup_schedule(1e-3, warmup_steps=100))
    """
    return linear_schedule(init_value, peak_value, warmup_steps)


def cosine_decay_schedule(
    init_value: float | Tensor, decay_steps: int, alpha: float | Tensor = 0.0
) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha · init_value`` over ``decay_steps``::

        value(t) = init · ((1 - α) · ½ (1 + cos(π · min(t, T) / T)) + α)

    For ``t ≤ T`` this is ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T,
    eta_min=α·init)``; after ``T`` it stays at ``α · init`` instead of rising again.

    References:
        Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
        <https://arxiv.org/abs/1608.03983>`_, 2017.
    """
    check_hyperparameter("init_value", init_value)
    check_hyperparameter("alpha", alpha, low=0, high=1)
    _check_steps("decay_steps", decay_steps, 1)

    def schedule(count: Tensor) -> Tensor:
        progress = torch.clamp(_steps(count), 0, decay_steps) / decay_steps
        cosine = 0.5 * (1 + torch.cos(math.pi * progress))
        return _output(init_value * ((1 - alpha) * cosine + alpha), init_value, alpha)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: float | Tensor,
    peak_value: float | Tensor,
    warmup_steps: int,
    decay_steps: int,
    end_value: float | Tensor = 0.0,
) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the whole schedule, warmup included: the value is ``peak_value``
    at ``warmup_steps`` and reaches ``end_value`` at ``decay_steps``, then stays there::

        t < W:  init + (peak - init) · t / W
        t ≥ W:  end + (peak - end) · ½ (1 + cos(π · min(t - W, D - W) / (D - W)))

    Example:
        >>> lr = fm.optim.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100,
        ...                                            decay_steps=1000)
    """
    check_hyperparameter("init_value", init_value)
    check_hyperparameter("peak_value", peak_value)
    check_hyperparameter("end_value", end_value)
    _check_steps("warmup_steps", warmup_steps, 0)
    _check_steps("decay_steps", decay_steps, warmup_steps + 1)
    cosine_steps = decay_steps - warmup_steps

    def schedule(count: Tensor) -> Tensor:
        t = _steps(count)
        warm = init_value + (peak_value - init_value) * t / max(warmup_steps, 1)
        progress = torch.clamp(t - warmup_steps, 0, cosine_steps) / cosine_steps
        decayed = end_value + (peak_value - end_value) * 0.5 * (1 + torch.cos(math.pi * progress))
        value = torch.where(t < warmup_steps, warm, decayed)
        return _output(value, init_value, peak_value, end_value)

    return schedule


def step_decay_schedule(
    init_value: float | Tensor, step_size: int, gamma: float | Tensor = 0.1
) -> Schedule:
    """Multiply by ``gamma`` every ``step_size`` steps: ``init · gamma^⌊t / step_size⌋``.

    This is ``torch.optim.lr_scheduler.StepLR(step_size, gamma)``.
    """
    check_hyperparameter("init_value", init_value)
    check_hyperparameter("gamma", gamma, low=0, low_open=True)
    _check_steps("step_size", step_size, 1)

    def schedule(count: Tensor) -> Tensor:
        drops = torch.div(count, step_size, rounding_mode="floor").to(torch.float64)
        return _output(init_value * torch.pow(gamma, drops), init_value, gamma)

    return schedule
