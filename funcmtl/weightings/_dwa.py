"""Dynamic Weight Average (Liu et al.): weights from the rate of change of the losses."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import (
    Weighting,
    check_init,
    check_losses,
    check_positive,
    zero_count,
)


class DwaState(NamedTuple):
    count: Tensor  # shape=(), int64: calls so far
    running_sum: Tensor  # shape=(T,): sum of the losses of the current period so far
    last_mean: Tensor  # shape=(T,): mean loss of the last completed period, L(t−1)
    before_last_mean: Tensor  # shape=(T,): mean loss of the period before that, L(t−2)


@named
def dwa(temperature: float | Tensor = 2.0, period: int = 100) -> Weighting:
    """Dynamic Weight Average: ``w = T · softmax(r / temperature)``, ``r`` the loss ratio of
    the last two periods.

    DWA weighs each task by how slowly its loss fell over the last "epoch":

    .. math::

        wₖ(t) = \\frac{K \\exp(rₖ(t−1)/τ)}{Σᵢ \\exp(rᵢ(t−1)/τ)}, \\qquad
        rₖ(t−1) = \\frac{Lₖ(t−1)}{Lₖ(t−2)},

    with ``K`` tasks, temperature ``τ`` and ``Lₖ(t)`` the mean training loss of task ``k``
    over epoch ``t``; ``wₖ = 1`` during the first two epochs, before two averages exist.

    Here an epoch is a ``period`` of calls (set it to the number of steps per epoch to match
    the paper). The state keeps the running sum of the current period and the mean losses
    of the last two completed periods; a call in period ``p`` (counting from 0) returns
    weights from the means of periods ``p−1`` and ``p−2``, and 1 while ``p < 2``.

    Args:
        temperature: the softmax temperature ``τ`` (the paper uses 2); larger is smoother.
        period: calls per averaging period ("epoch"), a positive integer.

    Returns:
        A :class:`Weighting` whose state is :class:`DwaState`.

    Example:
        >>> wt = fm.weightings.dwa(temperature=2.0, period=1)
        >>> state = wt.init(3)
        >>> w, state = wt.weights(torch.ones(3), state)  # ones for the first 2 * period calls
        >>> w, state = wt.weights(torch.tensor([0.5, 1.0, 2.0]), state)
        >>> w
        tensor([1., 1., 1.])
        >>> w, state = wt.weights(torch.tensor([0.5, 1.0, 2.0]), state)
        >>> w  # the third task's loss grew the most: it gets the largest weight
        tensor([0.6817, 0.8753, 1.4431])

    References:
        Liu, Johns & Davison, `End-to-End Multi-Task Learning with Attention
        <https://openaccess.thecvf.com/content_CVPR_2019/papers/Liu_End-To-End_Multi-Task_Learning_With_Attention_CVPR_2019_paper.pdf>`_,
        2019.
    """
    check_positive("temperature", temperature)
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"`period` must be a positive integer (calls per epoch); got {period!r}.")

    def init(num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None):
        check_init(num_tasks, dtype)
        zeros = torch.zeros(num_tasks, dtype=dtype, device=device)
        return DwaState(zero_count(device), zeros, zeros.clone(), zeros.clone())

    def weights(
        losses: Tensor,
        state: DwaState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, DwaState]:
        del key, grad_norms
        num_tasks = check_losses(losses, "dwa", state.running_sum.shape[0])
        x = losses.detach().to(state.running_sum.dtype)
        # Two completed periods are needed before the ratio rₖ(t−1) = Lₖ(t−1)/Lₖ(t−2) exists.
        ready = state.count // period >= 2
        ratio = state.last_mean / torch.where(ready, state.before_last_mean, 1.0)
        w = torch.where(ready, num_tasks * torch.softmax(ratio / temperature, dim=0), 1.0)

        running_sum = state.running_sum + x
        count = state.count + 1
        ends_period = count % period == 0
        state = DwaState(
            count,
            torch.where(ends_period, 0.0, running_sum),
            torch.where(ends_period, running_sum / period, state.last_mean),
            torch.where(ends_period, state.last_mean, state.before_last_mean),
        )
        return w.to(losses.dtype), state

    return Weighting(init, weights)
