"""MGDA (Désidéri, 2012; Sener & Koltun, 2018): the min-norm point of the gradients' hull."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    EmptyState,
    check_gramian,
    from_weighting,
    stateless_init,
)
from funcmtl.aggregators._qp import solve_members, solve_on_gramian

_NORMALIZATIONS = ("none", "l2")


@named
def mgda(normalization: Literal["none", "l2"] = "none") -> Aggregator:
    r"""The exact minimum-norm element of the convex hull of the task gradients.

    With :math:`G = J J^\top` and :math:`\Delta` the probability simplex,

    .. math::
        w = \operatorname*{arg\,min}_{w \in \Delta} w^\top G w, \qquad d = J^\top w,

    the common descent direction of the multiple-gradient descent algorithm: either
    :math:`d = 0` (a Pareto-stationary point) or :math:`g_t^\top d \ge \lVert d \rVert^2 > 0`
    for every task. Its KKT conditions are :math:`(G w)_t \ge w^\top G w` for all ``t``, with
    equality where :math:`w_t > 0`. Where Sener & Koltun run Frank–Wolfe until a tolerance,
    this solves the QP to float round-off (:mod:`funcmtl.aggregators._qp`: a closed form for
    two tasks, a certified active-set method on eager calls, a fixed-iteration interior-point
    method otherwise). When gradients repeat, ``w`` is not unique
    but ``d`` is. Invariant to a permutation of the tasks; linear under positive scaling.

    Args:
        normalization: ``"none"`` (default) or ``"l2"``, LibMTL's ``mgda_gn``: with ``"l2"``
            every gradient is divided by its norm before the hull is taken (zero gradients stay
            zero), and the returned weights act on the original gradients,
            :math:`w_t / \lVert g_t \rVert`. LibMTL's loss-based options need the losses, which a
            Gramian weighting does not see.

    Returns:
        A stateless :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.mgda()
        >>> direction, _ = agg.update(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), agg.init(2))
        >>> direction  # the point of the segment closest to 0
        tensor([0.8000, 0.4000])

    References:
        Jean-Antoine Désidéri, `Multiple-gradient descent algorithm (MGDA) for multiobjective
        optimization <https://doi.org/10.1016/j.crma.2012.03.014>`_, 2012.

        Ozan Sener, Vladlen Koltun, `Multi-Task Learning as Multi-Objective Optimization
        <https://arxiv.org/abs/1810.04650>`_, 2018.
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {_NORMALIZATIONS}; got {normalization!r}."
        )

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        num_tasks = check_gramian(gramian)
        g = gramian.to(torch.float64)
        if normalization == "l2":
            norms = torch.diagonal(g).clamp(min=0).sqrt()
            inverse = torch.where(norms > 0, 1 / torch.where(norms > 0, norms, 1.0), 0.0)
            g = g * inverse[:, None] * inverse[None, :]
        zeros = torch.zeros(num_tasks, dtype=g.dtype, device=g.device)
        w = solve_on_gramian(g, zeros, simplex=True)
        if normalization == "l2":
            w = w * inverse
        return w.to(gramian.dtype), state

    def batched(gramians: Tensor) -> Tensor:  # (K, T, T) -> (K, T), on plain tensors
        return solve_members(gramians, torch.zeros_like(gramians[..., 0]), simplex=True)

    return from_weighting(
        stateless_init, weights_fn, batched=batched if normalization == "none" else None
    )
