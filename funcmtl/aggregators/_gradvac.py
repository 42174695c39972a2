"""GradVac (Wang et al., 2021): pull each pair of task gradients towards an EMA target cosine."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl._transform import check_init, named
from funcmtl.aggregators._base import (
    Aggregator,
    check_gramian,
    from_weighting,
    require_key,
)
from funcmtl.aggregators._options import as_option
from funcmtl.aggregators._pcgrad import task_orders, visit
from funcmtl.optim._checks import check_hyperparameter


class GradVacState(NamedTuple):
    """The EMA targets of GradVac."""

    targets: Tensor  # shape=(T, T), float32; targets[i, j] = φ̂_ij, the diagonal stays 0


@named
def gradvac(beta: float | Tensor = 0.5) -> Aggregator:
    r"""Gradient Vaccine: raise each pairwise cosine to an adaptive, EMA-tracked target.

    Each task gradient is copied, :math:`g_i' = g_i`, and visits every other task
    :math:`j \ne i` in a random order. With :math:`\phi_{ij}` the cosine between :math:`g_i'`
    and :math:`g_j`, and :math:`\hat\phi_{ij}` its target (Algorithm 1, Eq. 4–5):

    .. math::
        \text{if } \phi_{ij} < \hat\phi_{ij}: \quad
        g_i' \leftarrow g_i' + \frac{\lVert g_i' \rVert \big(\hat\phi_{ij}\sqrt{1-\phi_{ij}^2}
        - \phi_{ij}\sqrt{1-\hat\phi_{ij}^2}\big)}{\lVert g_j \rVert \sqrt{1-\hat\phi_{ij}^2}}
        \, g_j, \qquad
        \hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} + \beta\phi_{ij},

    and :math:`d = \sum_i g_i'`. The targets start at 0 (so the first step is PCGrad with the
    same order) and are updated after every visit with the cosine measured before the
    correction, as in LibMTL. The targets are over the whole model (the paper's coarsest
    parameter group). Task ``i`` visits the others in the order PCGrad uses,
    ``fm.random.permutation(fm.random.split(key, T)[i], T)``. Every :math:`g_i'` stays in the
    span of the task gradients, so GradVac is a weighting of :math:`G = J J^\top` with state.
    Linear under positive scaling; not permutation invariant for a fixed key.

    Args:
        beta: EMA rate of the targets, in ``(0, 1]`` (LibMTL's and the official code's default
            0.5); a number or a 0-dim tensor (which ``vmap`` may batch).

    Returns:
        An :class:`Aggregator` with ``weights``, whose state is :class:`GradVacState`;
        ``update`` and ``weights`` require ``key``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.gradvac(beta=0.5)
        >>> state = agg.init(2)
        >>> grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> direction, state = agg.update(grads, state, key=fm.random.key(0))
        >>> direction  # the first step is PCGrad's
        tensor([0.5000, 1.5000])

    References:
        Zirui Wang, Yulia Tsvetkov, Orhan Firat, Yuan Cao, `Gradient Vaccine: Investigating and
        Improving Multi-task Optimization in Massively Multilingual Models
        <https://openreview.net/forum?id=F1vEjWK-lH_>`_, 2021.
    """
    check_hyperparameter("beta", beta, low=0, low_open=True, high=1)
    beta = as_option(beta)

    def init_fn(
        num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None
    ) -> GradVacState:
        check_init(num_tasks, dtype)
        return GradVacState(torch.zeros(num_tasks, num_tasks, dtype=dtype, device=device))

    def weights_fn(
        gramian: Tensor, state: GradVacState, *, key: Tensor | None = None
    ) -> tuple[Tensor, GradVacState]:
        num_tasks = check_gramian(gramian)
        key = require_key(key, "gradvac")
        if tuple(state.targets.shape[-2:]) != (num_tasks, num_tasks):
            raise ValueError(
                f"`state` must be GradVac's state for T={num_tasks} tasks, targets of shape "
                f"({num_tasks}, {num_tasks}); got {tuple(state.targets.shape)}."
            )
        dtype, device = gramian.dtype, gramian.device
        tiny = torch.finfo(dtype).tiny
        orders = task_orders(key.to(device), num_tasks)
        targets = state.targets.to(dtype=dtype, device=device)
        norms = torch.diagonal(gramian).clamp(min=0).sqrt()
        # Row i of `coef` holds g_i' as a combination of the original rows of J.
        coef = torch.eye(num_tasks, dtype=dtype, device=device)
        for step in range(num_tasks):
            one_hot, other = visit(orders, step, dtype)
            coef_gram = coef @ gramian
            inner = (coef_gram * one_hot).sum(-1)  # g_i' · g_j
            norm_i = (coef_gram * coef).sum(-1).clamp(min=0).sqrt()  # ||g_i'||
            norm_j = one_hot @ norms  # ||g_j||
            valid = other & (norm_i * norm_j > 0)
            phi = torch.where(valid, inner / (norm_i * norm_j).clamp(min=tiny), 0.0)
            phi = phi.clamp(-1.0, 1.0)
            target = (targets * one_hot).sum(-1)
            # Eq. 4: the multiple of g_j that brings the cosine up to exactly the target.
            sin_phi = (1 - phi**2).clamp(min=0).sqrt()
            sin_target = (1 - target**2).clamp(min=0).sqrt().clamp(min=torch.finfo(dtype).eps)
            shift = (norm_i * (target * sin_phi - phi * sin_target)) / (
                norm_j.clamp(min=tiny) * sin_target
            )
            vaccinate = valid & (phi < target)
            coef = coef + torch.where(vaccinate, shift, 0.0)[:, None] * one_hot
            # Eq. 5: the EMA of the measured (pre-correction) cosine.
            ema_step = torch.where(other, beta * (phi - target), 0.0)
            targets = targets + ema_step[:, None] * one_hot
        new_state = GradVacState(targets.to(state.targets.dtype))
        return coef.sum(0), new_state

    return from_weighting(init_fn, weights_fn)
