"""CAGrad (Liu et al., 2021): the best worst-task improvement in a ball around the mean."""

from __future__ import annotations

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
from funcmtl.aggregators._cagrad_hull import ball_weights
from funcmtl.aggregators._normalize import normalize
from funcmtl.aggregators._options import as_option
from funcmtl.optim._checks import check_hyperparameter

_RESCALES = (0, 1, 2)


@named
def cagrad(c: float = 0.5, rescale: int = 1) -> Aggregator:
    r"""Conflict-averse gradient descent: maximise the worst task's gain near the mean gradient.

    With :math:`g_0 = \tfrac{1}{T} \sum_i g_i` the mean gradient, CAGrad's direction solves

    .. math::
        \max_{d} \min_i g_i^\top d \quad \text{s.t.} \quad
        \lVert d - g_0 \rVert \le c \lVert g_0 \rVert,

    whose dual over the simplex :math:`\Delta` is
    :math:`\min_{w \in \Delta} g_w^\top g_0 + c \lVert g_0 \rVert \lVert g_w \rVert` with
    :math:`g_w = J^\top w`, and

    .. math::
        d = \frac{1}{\rho} \Big( g_0 + \frac{c \lVert g_0 \rVert}{\lVert g_w \rVert} g_w \Big),
        \qquad \rho = 1,\ 1 + c^2 \text{ or } 1 + c \ (\texttt{rescale} = 0, 1, 2).

    The official code solves the dual with ``scipy.optimize.minimize`` (SLSQP, default
    tolerance); here it is solved to float round-off with fixed iteration counts (a barrier
    method on its second-order-cone form, then an interior-point method;
    :func:`funcmtl.aggregators._cagrad_dual.cagrad_weights`). With ``c = 0`` the ball is a point
    and ``d`` is the mean. When ``0`` is in the convex hull of the gradients and ``c`` is large
    enough, the optimum is 0 (every ``d`` of the ball with :math:`J d \ge 0` attains it, e.g.
    ``d = 0`` when ``c ≥ 1``) and the dual's :math:`g_w = 0` does not give ``d``; then ``d`` is
    the projection of :math:`g_0` onto :math:`\{d : J d \ge 0\}`, the optimum closest to the
    mean (DualProj's direction). Invariant to a permutation of the tasks; linear under
    positive scaling.

    Args:
        c: the radius of the ball in units of :math:`\lVert g_0 \rVert`, ``≥ 0`` (0.5 by
            default, as in LibMTL and the official code; the paper suggests values in
            ``[0, 1)`` to converge to a stationary point of the average loss); a number or a
            0-dim tensor (which ``vmap`` may batch, for a sweep over ``c``).
        rescale: divide the direction by 1 (``0``), :math:`1 + c^2` (``1``, LibMTL's default)
            or :math:`1 + c` (``2``).

    Returns:
        A stateless :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> agg = fm.aggregators.cagrad(c=0.5, rescale=0)
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> direction  # symmetric tasks: the mean, lengthened by c‖g₀‖
        tensor([0.7500, 0.7500])

    References:
        Bo Liu, Xingchao Liu, Xiaojie Jin, Peter Stone, Qiang Liu, `Conflict-Averse Gradient
        Descent for Multi-task Learning <https://arxiv.org/abs/2110.14048>`_, 2021.
    """
    check_hyperparameter("c", c, low=0)
    if rescale not in _RESCALES or isinstance(rescale, bool):
        raise ValueError(f"`rescale` must be one of {_RESCALES}; got {rescale!r}.")
    c = as_option(c)
    divisor = (1.0, 1.0 + c**2, 1.0 + c)[rescale]

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        num_tasks = check_gramian(gramian)
        mean = torch.full((num_tasks,), 1 / num_tasks, dtype=torch.float64, device=gramian.device)
        if isinstance(c, float) and c == 0.0:  # a static choice: the ball is {g₀}
            return (mean / divisor).to(gramian.dtype), state
        q, _ = normalize(gramian)  # G / scale
        radius = c * (q.sum() / num_tasks**2).clamp(min=0).sqrt()  # c ‖g₀‖, in the same units
        return (ball_weights(q, radius) / divisor).to(gramian.dtype), state

    return from_weighting(stateless_init, weights_fn)
