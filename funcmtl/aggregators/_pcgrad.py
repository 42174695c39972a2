"""PCGrad (Yu et al., 2020): project each task gradient away from the ones it conflicts with."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import random
from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    EmptyState,
    check_gramian,
    from_weighting,
    require_key,
    stateless_init,
)


def task_orders(key: Tensor, num_tasks: int) -> Tensor:
    """The order in which each task visits the others, ``(T, T)`` int64.

    Row ``i`` is ``fm.random.permutation(fm.random.split(key, T)[i], T)``: a permutation of all
    tasks, in which task ``i`` itself is skipped. PCGrad and GradVac share it, so with the same
    key they project in the same order.
    """
    return random.permutation(random.split(key, num_tasks), num_tasks)


def visit(orders: Tensor, step: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Step ``step`` of every task's walk: one-hot rows ``E (T, T)`` with ``E[i, j] = 1`` where
    task ``i`` visits ``j``, and a ``(T,)`` mask that is ``False`` where ``j == i``."""
    num_tasks = orders.shape[-1]
    tasks = torch.arange(num_tasks, device=orders.device)
    visited = orders[:, step]
    one_hot = (visited[:, None] == tasks[None, :]).to(dtype)
    return one_hot, visited != tasks


@named
def pcgrad() -> Aggregator:
    r"""Projecting Conflicting Gradients: remove, pairwise, the components that conflict.

    Each task gradient is copied, :math:`g_i^{PC} = g_i`, and then visits every other task
    :math:`j \ne i` in a random order; whenever the two conflict it is projected onto the
    normal plane of :math:`g_j` (Algorithm 1)

    .. math::
        \text{if } g_i^{PC} \cdot g_j < 0: \quad
        g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC} \cdot g_j}{\lVert g_j \rVert^2} g_j,
        \qquad d = \sum_{i=1}^{T} g_i^{PC}.

    The direction is the *sum* of the projected gradients, as in the paper, the official
    TensorFlow code, LibMTL and torchjd (the Pytorch-PCGrad port averages instead). When no pair
    conflicts it is the plain sum. Every :math:`g_i^{PC}` stays in the span of the task
    gradients, so PCGrad is tracked as a coefficient vector over the original rows with inner
    products read from :math:`G = J J^\top`: a weighting of the Gramian, usable on the cheap
    path. Task ``i`` visits the others in the order
    ``fm.random.permutation(fm.random.split(key, T)[i], T)`` (skipping itself). Linear under
    positive scaling; not permutation invariant for a fixed key (the order follows task index).

    Returns:
        An :class:`Aggregator` with ``weights``; ``update`` and ``weights`` require ``key``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.pcgrad()
        >>> grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> direction, _ = agg.update(grads, agg.init(2), key=fm.random.key(0))
        >>> direction
        tensor([0.5000, 1.5000])

    References:
        Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman, Chelsea Finn,
        `Gradient Surgery for Multi-Task Learning <https://arxiv.org/abs/2001.06782>`_, 2020.
    """

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        num_tasks = check_gramian(gramian)
        key = require_key(key, "pcgrad")
        if num_tasks == 2:  # one other task each: the order does not matter
            return two_task_weights(gramian), state
        return project_in_order(gramian, task_orders(key.to(gramian.device), num_tasks)), state

    return from_weighting(stateless_init, weights_fn)


def project_in_order(gramian: Tensor, orders: Tensor) -> Tensor:
    """PCGrad's weights ``(T,)`` for the visiting ``orders`` of :func:`task_orders`."""
    num_tasks = gramian.shape[-1]
    sq_norms = torch.diagonal(gramian)
    # Row i of `coef` holds g_i^PC as a combination of the original rows of J.
    coef = torch.eye(num_tasks, dtype=gramian.dtype, device=gramian.device)
    for step in range(num_tasks):
        one_hot, other = visit(orders, step, gramian.dtype)
        inner = (coef @ gramian * one_hot).sum(-1)  # g_i^PC · g_j
        sq_norm_j = one_hot @ sq_norms  # ||g_j||²
        conflict = other & (inner < 0) & (sq_norm_j > 0)
        shift = -inner / torch.where(sq_norm_j > 0, sq_norm_j, 1.0)
        coef = coef + torch.where(conflict, shift, 0.0)[:, None] * one_hot
    return coef.sum(0)


def two_task_weights(gramian: Tensor) -> Tensor:
    """PCGrad's weights for ``T = 2``: ``g₀ − (g₀·g₁ / ‖g₁‖²) g₁ + g₁ − (g₀·g₁ / ‖g₀‖²) g₀``
    when ``g₀·g₁ < 0``, else ``g₀ + g₁`` (the same numbers as :func:`project_in_order`)."""
    inner = gramian[0, 1]
    sq_norms = torch.diagonal(gramian)
    shifts = -inner / torch.where(sq_norms > 0, sq_norms, 1.0)  # (of g₁ on g₀, of g₀ on g₁)
    return 1 + torch.where((inner < 0) & (sq_norms > 0), shifts, 0.0)

