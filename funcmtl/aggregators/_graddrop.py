"""GradDrop (Chen et al., 2020): per coordinate, keep the gradients of one randomly chosen sign."""

from __future__ import annotations

import functools

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from funcmtl import random
from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    EmptyState,
    PyTree,
    num_tasks_of,
    require_key,
    stateless_init,
)
from funcmtl.aggregators._options import as_option
from funcmtl.optim._checks import check_hyperparameter


@named
def graddrop(leak: float | Tensor = 0.0) -> Aggregator:
    r"""Gradient Sign Dropout: each coordinate keeps only its positive or only its negative parts.

    Per coordinate :math:`k`, the positive sign purity and the masks are (Algorithm 1, lines
    10–15, with :math:`f` the identity)

    .. math::
        P_k = \tfrac12\Big(1 + \frac{\sum_i g_{ik}}{\sum_i |g_{ik}|}\Big), \quad
        U_k \sim \mathcal U(0, 1), \quad
        M_{ik} = [P_k > U_k]\,[g_{ik} > 0] + [P_k < U_k]\,[g_{ik} < 0],

    .. math::
        d_k = \sum_i \big(\ell + (1 - \ell) M_{ik}\big)\, g_{ik},

    so with ``leak=0`` every coordinate sums either its positive or its negative entries, the
    positive ones with probability :math:`P_k`. A coordinate where every gradient is 0 has
    :math:`P_k = \tfrac12` and stays 0. :math:`U` is drawn from ``key`` once for the flattened
    parameters, leaf after leaf in ``tree.leaves`` order, so a pytree and its flattened
    ``(T, P)`` matrix get the same masks. GradDrop works coordinate by coordinate, so it is
    *not* a weighting of the Gramian (no ``weights``). The paper also multiplies gradients by
    the sign of the layer input to handle batch-separated gradients; this is the aggregation
    step only, as in torchjd. Linear under positive scaling; permutation invariant (the masks do
    not depend on task order).

    Args:
        leak: the fraction :math:`\ell \in [0, 1]` of every gradient that passes whatever the
            mask (0: pure GradDrop, 1: the sum); a number or a 0-dim tensor (which ``vmap`` may
            batch).

    Returns:
        An :class:`Aggregator` without ``weights``; ``update`` requires ``key``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.graddrop()
        >>> grads = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
        >>> direction, _ = agg.update(grads, agg.init(2), key=fm.random.key(0))
        >>> direction[0]  # no conflict in the first coordinate: kept whole
        tensor(4.)

    References:
        Zhao Chen, Jiquan Ngiam, Yanping Huang, Thang Luong, Henrik Kretzschmar, Yuning Chai,
        Dragomir Anguelov, `Just Pick a Sign: Optimizing Deep Multitask Models with Gradient
        Sign Dropout <https://arxiv.org/abs/2010.06808>`_, 2020.
    """
    check_hyperparameter("leak", leak, low=0, high=1)
    leak = as_option(leak)

    def update_fn(
        task_grads: PyTree, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[PyTree, EmptyState]:
        num_tasks_of(task_grads)
        key = require_key(key, "graddrop")
        leaves, spec = pytree.tree_flatten(task_grads)
        dtype = functools.reduce(torch.promote_types, [x.dtype for x in leaves])
        sizes = [x[0].numel() for x in leaves]
        draws = random.uniform(key.to(leaves[0].device), (sum(sizes),), dtype=dtype)
        out = [
            _drop(x, u.reshape(x.shape[1:]), leak)
            for x, u in zip(leaves, torch.split(draws, sizes), strict=True)
        ]
        return pytree.tree_unflatten(out, spec), state

    return Aggregator(stateless_init, update_fn)


def _drop(grads: Tensor, draws: Tensor, leak: float | Tensor) -> Tensor:
    """One leaf: ``grads (T, ...)``, ``draws (...)`` uniform; returns the direction ``(...)``."""
    draws = draws.to(grads.device)
    total = grads.sum(0)
    mass = grads.abs().sum(0)
    purity = 0.5 * (1 + total / torch.where(mass > 0, mass, 1.0))
    purity = purity.to(draws.dtype)
    keep = ((purity > draws) & (grads > 0)) | ((purity < draws) & (grads < 0))
    return (grads * (leak + (1 - leak) * keep.to(grads.dtype))).sum(0)
