"""IMTL-G (Liu et al., 2021): the combination with equal projections on every task direction."""

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
from funcmtl.optim._checks import check_hyperparameter


def default_rtol(dtype: torch.dtype) -> float:
    """Relative eigenvalue cutoff for a Gramian of ``dtype``: ``100 ε`` of float32 or float64.

    The entries of ``G = J Jᵀ`` carry rounding errors of a few ``ε · λ_max`` (``ε`` of the
    gradients' dtype, whatever the precision of the later linear algebra); a margin of 100
    keeps exactly dependent task gradients (duplicated tasks, a task that is the sum of two
    others) from being read as independent ones.
    """
    return 100 * torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps


COMPUTE_DTYPE = torch.float64  # the (T, T) linear algebra; weights go back to G's dtype


def compute_gramian(
    gramian: Tensor, rtol: float | Tensor | None, grads_dtype: torch.dtype | None = None
) -> tuple[Tensor, float | Tensor]:
    """Check ``G (T, T)``; return it in :data:`COMPUTE_DTYPE` and the eigenvalue cutoff
    (``rtol``, or :func:`default_rtol` of ``grads_dtype`` — by default ``G``'s dtype — when
    ``None``: ``update`` passes a float64 ``G`` of gradients that may be float32)."""
    check_gramian(gramian)
    dtype = gramian.dtype if grads_dtype is None else grads_dtype
    cutoff = default_rtol(dtype) if rtol is None else rtol
    return gramian.to(COMPUTE_DTYPE), cutoff


def check_rtol(rtol: float | Tensor | None) -> None:
    check_hyperparameter("rtol", rtol, low=0, high=1, high_open=True, or_none=True)


@named
def imtl_g(rtol: float | Tensor | None = None) -> Aggregator:
    r"""Impartial MTL, gradient part: the combination whose projection on every unit task
    gradient is the same.

    IMTL-G looks for :math:`d = \sum_t \alpha_t g_t` with :math:`\sum_t \alpha_t = 1` and
    :math:`d \cdot u_1 = d \cdot u_t` for every :math:`t`, where :math:`u_t = g_t/\lVert g_t
    \rVert`. The paper's closed form, with :math:`D = [g_1 - g_t]_{t \ge 2}` and
    :math:`U = [u_1 - u_t]_{t \ge 2}`, is
    :math:`\alpha_{2:T} = g_1 U^\top (D U^\top)^{-1}`, :math:`\alpha_1 = 1 - \sum_{t\ge2}
    \alpha_t`. Written with :math:`G = J J^\top` and :math:`n = \sqrt{\operatorname{diag} G}`
    the conditions read :math:`G\alpha = c\, n`, so (as in torchjd's generalisation)

    .. math::
        v = G^{+} n, \qquad \alpha = v / \mathbf 1^\top v,

    which equals the closed form when the task gradients are linearly independent, is
    permutation invariant, and still gives equal projections when some gradients are linearly
    dependent but consistent (e.g. a duplicated task). :math:`\alpha = 0` when
    :math:`\mathbf 1^\top v = 0` (e.g. all gradients are 0). Weights are invariant to a
    positive rescaling of ``J``, so the direction is linear under positive scaling. The paper
    also learns loss scales (IMTL-L); that is a loss weighting, not part of this aggregator.

    Args:
        rtol: eigenvalues of ``G`` at or below ``rtol · λ_max`` count as zero in the
            pseudo-inverse; ``None``: 100 machine epsilons (see :func:`default_rtol`).

    Returns:
        An :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.imtl_g()
        >>> grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> direction  # projection 2/3 on both axes
        tensor([0.6667, 0.6667])

    References:
        Liyang Liu, Yi Li, Zhanghui Kuang, Jing-Hao Xue, Yimin Chen, Wenming Yang, Qingmin Liao,
        Wayne Zhang, `Towards Impartial Multi-task Learning
        <https://openreview.net/forum?id=IMPnRXEWpvr>`_, 2021.
    """
    check_rtol(rtol)

    def weights_fn(
        gramian: Tensor,
        state: EmptyState,
        *,
        key: Tensor | None = None,
        grads_dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, EmptyState]:
        del key
        gram, cutoff = compute_gramian(gramian, rtol, grads_dtype)
        norms = torch.diagonal(gram).clamp(min=0).sqrt()
        v = torch.linalg.pinv(gram, rtol=cutoff, hermitian=True) @ norms
        total = v.sum()
        alpha = torch.where(total != 0, v / torch.where(total != 0, total, 1.0), 0.0)
        return alpha.to(gramian.dtype), state

    return from_weighting(stateless_init, weights_fn, needs_grads_dtype=True)
