"""Mean and sum: the unweighted baselines every multi-task method is compared against."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    AggregatorState,
    EmptyState,
    PyTree,
    check_gramian,
    num_tasks_of,
    stateless_init,
)


def _constant_weighting(value_of: str) -> Aggregator:
    """Weights ``1 / T`` (``value_of="mean"``) or ``1`` (``"sum"``), whatever the Gramian."""

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        num_tasks = check_gramian(gramian)
        value = 1.0 / num_tasks if value_of == "mean" else 1.0
        return torch.full((num_tasks,), value, dtype=gramian.dtype, device=gramian.device), state

    def update_fn(
        task_grads: PyTree, state: AggregatorState, *, key: Tensor | None = None
    ) -> tuple[PyTree, AggregatorState]:
        del key
        num_tasks_of(task_grads)
        # The direct reduction: no Gramian is needed to weight every task equally.
        reduce = torch.mean if value_of == "mean" else torch.sum
        return tree.map(lambda x: reduce(x, dim=0), task_grads), state

    return Aggregator(stateless_init, update_fn, weights_fn)


@named
def mean() -> Aggregator:
    r"""The average of the task gradients.

    .. math::
        d = \frac{1}{T} \sum_{t=1}^{T} g_t, \qquad w = \tfrac{1}{T} \mathbf{1}.

    Taking the mean is plain multi-task learning with equal loss weights ``1 / T``
    (the "EW" / equal-weighting baseline). It is linear, permutation invariant and stateless.

    Returns:
        An :class:`Aggregator` with ``weights`` (the constant ``1 / T``).

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.mean()
        >>> direction, _ = agg.update(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), agg.init(2))
        >>> direction
        tensor([0.5000, 1.5000])

    References:
        Rich Caruana, `Multitask Learning
        <https://link.springer.com/article/10.1023/A:1007379606734>`_, 1997.
    """
    return _constant_weighting("mean")


@named
def sum() -> Aggregator:  # noqa: A001 — the method's name, as in torchjd
    r"""The sum of the task gradients.

    .. math::
        d = \sum_{t=1}^{T} g_t, \qquad w = \mathbf{1}.

    This is the gradient of the summed loss :math:`\sum_t L_t`. Linear, permutation invariant
    and stateless.

    Returns:
        An :class:`Aggregator` with ``weights`` (the constant ``1``).

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.sum()
        >>> direction, _ = agg.update(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), agg.init(2))
        >>> direction
        tensor([1., 3.])

    References:
        Rich Caruana, `Multitask Learning
        <https://link.springer.com/article/10.1023/A:1007379606734>`_, 1997.
    """
    return _constant_weighting("sum")
