"""UPGrad (Quinton & Rey, 2024): project every gradient onto the dual cone, then average."""

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
from funcmtl.aggregators._qp import project_weights, solve_members
from funcmtl.optim._checks import check_hyperparameter


def check_options(pref_vector: Tensor | None, reg_eps: float | Tensor) -> None:
    """The shared option checks of UPGrad and DualProj."""
    if pref_vector is not None and (not isinstance(pref_vector, Tensor) or pref_vector.dim() != 1):
        found = tuple(pref_vector.shape) if isinstance(pref_vector, Tensor) else pref_vector
        raise ValueError(f"`pref_vector` must be a 1-D tensor of shape (T,); got {found!r}.")
    check_hyperparameter("reg_eps", reg_eps, low=0)


def preference(pref_vector: Tensor | None, gramian: Tensor) -> Tensor:
    """``u (T,)`` in float64: ``pref_vector``, or ``1 / T`` when it is ``None``."""
    num_tasks = check_gramian(gramian)
    if pref_vector is None:
        return torch.full((num_tasks,), 1 / num_tasks, dtype=torch.float64, device=gramian.device)
    if pref_vector.shape != (num_tasks,):
        raise ValueError(
            f"`pref_vector` must have shape (T,)=({num_tasks},) to match the Gramian; got "
            f"{tuple(pref_vector.shape)}."
        )
    return pref_vector.to(dtype=torch.float64, device=gramian.device)


@named
def upgrad(pref_vector: Tensor | None = None, reg_eps: float | Tensor = 0.0) -> Aggregator:
    r"""Unconflicting projection of gradients: average the gradients' dual-cone projections.

    Each gradient :math:`g_i` (scaled by :math:`u_i`) is projected onto the dual cone of the
    rows of :math:`J`, :math:`\{x : J x \ge 0\}`, and the projections are summed. With
    :math:`G = J J^\top`, the projection of :math:`J^\top u_i e_i` is :math:`J^\top v_i` with
    (Proposition 1 of the paper)

    .. math::
        v_i = \operatorname*{arg\,min}_{v \ge u_i e_i} v^\top G v, \qquad
        w = \sum_{i=1}^{T} v_i, \qquad d = J^\top w,

    and :math:`u = \tfrac{1}{T}\mathbf{1}` by default, so ``d`` is the mean of the projected
    gradients. Then :math:`J d \ge 0`: ``d`` conflicts with no task; when no pair of gradients
    conflicts every :math:`g_i` is already in the cone and ``d`` is the mean. The ``T`` QPs are
    solved to float round-off as one batch (:mod:`funcmtl.aggregators._qp`: closed forms for
    two tasks, a certified active-set method on eager calls, a fixed-iteration interior-point
    method otherwise). Invariant to a permutation of the tasks
    (with a permuted ``pref_vector``) and linear under positive scaling. ``update`` solves on a
    float64 copy of the Gramian, which is accumulated in the gradients' dtype (float64 products
    of float32 gradients would double the cost of the step's largest reduction). These
    properties therefore hold to float64 round-off for float64 gradients; for float32 gradients
    of a rank-deficient ``J`` (a singular ``G``, whose weights are not unique) the Gramian's
    rounding noise fills ``G``'s null space and they hold to about ``1e-3`` of the largest
    gradient norm (``2e-3`` is what the test suite allows; ``reg_eps=1e-4`` or float64
    gradients remove the effect).

    Args:
        pref_vector: ``u``, the weights ``(T,)`` of the combination; ``None`` means
            ``1 / T``.
        reg_eps: added to the diagonal of ``G / tr(G)`` before solving. torchjd uses
            ``1e-4`` to keep its QP solver away from singular Gramians; this solver does not
            need it, so the default ``0`` solves the exact problem. ``reg_eps=1e-4``
            reproduces torchjd's weights. A number or a 0-dim tensor (which ``vmap`` may
            batch).

    Returns:
        A stateless :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.upgrad()
        >>> grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # the two gradients conflict
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> torch.round(grads @ direction, decimals=4)  # ≥ 0: no task gets worse
        tensor([0.2500, 0.5000])

    References:
        Pierre Quinton, Valérian Rey, `Jacobian Descent for Multi-Objective Optimization
        <https://arxiv.org/abs/2406.16232>`_, 2024.
    """
    check_options(pref_vector, reg_eps)

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        u = preference(pref_vector, gramian)
        # Row i of diag(u) is the lower bound u_i e_i of the i-th projection.
        v = project_weights(gramian, torch.diag(u), reg_eps)
        return v.sum(0).to(gramian.dtype), state

    def batched(gramians: Tensor) -> Tensor:  # (K, T, T) -> (K, T), on plain tensors
        bounds = torch.diag(preference(pref_vector, gramians[0])).expand_as(gramians)
        return solve_members(gramians, bounds).sum(-2)

    return from_weighting(stateless_init, weights_fn, batched=exact_only(batched, reg_eps))


def exact_only(batched, reg_eps: float | Tensor):
    """UPGrad's and DualProj's ``batched`` form, for the exact problem (``reg_eps = 0``)."""
    return batched if isinstance(reg_eps, float) and reg_eps == 0 else None
