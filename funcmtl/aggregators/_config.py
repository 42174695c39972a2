"""ConFIG (Liu et al., 2024): the direction with equal cosine to every task gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    EmptyState,
    from_weighting,
    stateless_init,
)
from funcmtl.aggregators._imtl_g import check_rtol, compute_gramian


@named
def config(rtol: float | Tensor | None = None) -> Aggregator:
    r"""Conflict-Free Inverse Gradients: a direction with the same positive cosine to every task.

    With the unit gradients :math:`U = [g_t / \lVert g_t \rVert]_t` (a zero gradient gives a
    zero row), ConFIG (Eq. 2) takes the least-norm solution of :math:`U d = \mathbf 1` and
    rescales it to the sum of the projections of the task gradients:

    .. math::
        d_u = U^{+} \mathbf 1, \qquad \hat d = d_u / \lVert d_u \rVert, \qquad
        d = \Big(\sum_t g_t \cdot \hat d\Big)\, \hat d.

    :math:`U^+ = U^\top (U U^\top)^+` and :math:`U U^\top = N^{+} G N^{+}` with
    :math:`N = \operatorname{diag}(\lVert g_t \rVert)`, so :math:`d_u = J^\top c` with
    :math:`c = N^{+} (N^{+} G N^{+})^{+} \mathbf 1` and ConFIG is a weighting of :math:`G`:

    .. math::
        w = \frac{\mathbf 1^\top G c}{c^\top G c}\, c .

    When ``J`` has full row rank, :math:`U d_u = \mathbf 1`: the cosine of :math:`d` with every
    task gradient is :math:`1/\lVert d_u \rVert > 0`. The direction is 0 when every gradient
    is 0. Uses equal preference weights and the "projection length" model of the official
    code. Permutation invariant; linear under positive scaling.

    Args:
        rtol: eigenvalues of :math:`U U^\top` at or below ``rtol · λ_max`` count as zero in
            the pseudo-inverse; ``None``: 100 machine epsilons of the Gramian's dtype.

    Returns:
        An :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.config()
        >>> grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> direction  # along the bisector, length (1 + 2) / √2
        tensor([1.5000, 1.5000])

    References:
        Qiang Liu, Mengyu Chu, Nils Thuerey, `ConFIG: Towards Conflict-free Training of Physics
        Informed Neural Networks <https://arxiv.org/abs/2408.11104>`_, 2024.
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
        inv_norms = torch.where(norms > 0, 1 / torch.where(norms > 0, norms, 1.0), 0.0)
        cosines = gram * inv_norms[:, None] * inv_norms[None, :]  # U Uᵀ
        ones = torch.ones_like(norms)
        coef = inv_norms * (torch.linalg.pinv(cosines, rtol=cutoff, hermitian=True) @ ones)
        gram_coef = gram @ coef
        sq_length = coef @ gram_coef  # ||d_u||²
        projections = gram_coef.sum()  # Σ_t g_t · d_u
        ratio = projections / torch.where(sq_length > 0, sq_length, 1.0)
        weights = torch.where(sq_length > 0, ratio, 0.0) * coef
        return weights.to(gramian.dtype), state

    return from_weighting(stateless_init, weights_fn, needs_grads_dtype=True)
