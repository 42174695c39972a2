"""DualProj (torchjd; GEM's projection): project the mean gradient onto the dual cone."""

from __future__ import annotations

from torch import Tensor

from funcmtl._transform import named
from funcmtl.aggregators._base import Aggregator, EmptyState, from_weighting, stateless_init
from funcmtl.aggregators._qp import project_weights, solve_members
from funcmtl.aggregators._upgrad import check_options, exact_only, preference


@named
def dualproj(pref_vector: Tensor | None = None, reg_eps: float | Tensor = 0.0) -> Aggregator:
    r"""The mean gradient projected onto the dual cone of the task gradients.

    With :math:`G = J J^\top` and :math:`u = \tfrac{1}{T}\mathbf{1}` by default, the
    Euclidean projection of :math:`J^\top u` onto :math:`\{x : J x \ge 0\}` is
    :math:`J^\top w` with

    .. math::
        w = \operatorname*{arg\,min}_{v \ge u} v^\top G v, \qquad d = J^\top w

    (the dual of GEM's Equation 11; Proposition 1 of Quinton & Rey). So :math:`J d \ge 0`:
    ``d`` conflicts with no task, and when the mean already conflicts with none (``G u ≥ 0``)
    it is returned unchanged. The QP is solved to float round-off (as UPGrad's, see
    :mod:`funcmtl.aggregators._qp`). Invariant to a
    permutation of the tasks and linear under positive scaling.

    Args:
        pref_vector: ``u``, the weights ``(T,)`` of the combination that is projected;
            ``None`` means ``1 / T``.
        reg_eps: added to the diagonal of ``G / tr(G)`` before solving, as torchjd does with
            ``1e-4``; the default ``0`` solves the exact problem. A number or a 0-dim tensor.

    Returns:
        A stateless :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.dualproj()
        >>> grads = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])  # the mean conflicts with task 0
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> torch.round(grads @ direction, decimals=4)
        tensor([0.0000, 0.5000])

    References:
        David Lopez-Paz, Marc'Aurelio Ranzato, `Gradient Episodic Memory for Continual
        Learning <https://arxiv.org/abs/1706.08840>`_, 2017.

        Pierre Quinton, Valérian Rey, `Jacobian Descent for Multi-Objective Optimization
        <https://arxiv.org/abs/2406.16232>`_, 2024.
    """
    check_options(pref_vector, reg_eps)

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        u = preference(pref_vector, gramian)
        return project_weights(gramian, u, reg_eps).to(gramian.dtype), state

    def batched(gramians: Tensor) -> Tensor:  # (K, T, T) -> (K, T), on plain tensors
        u = preference(pref_vector, gramians[0])
        return solve_members(gramians, u.expand_as(gramians[..., 0]))

    return from_weighting(stateless_init, weights_fn, batched=exact_only(batched, reg_eps))
