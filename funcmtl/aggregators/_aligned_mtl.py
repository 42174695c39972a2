"""Aligned-MTL (Senushkin et al., 2023): make the task gradients orthogonal with equal norms."""

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


def balance_transformation(
    gramian: Tensor, rtol: float | Tensor | None = None, grads_dtype: torch.dtype | None = None
) -> Tensor:
    r"""The balance matrix ``B (T, T)`` of Aligned-MTL: the aligned gradients are ``B J``.

    With :math:`G = V \Lambda V^\top` restricted to the eigenvalues above ``rtol · λ_max``
    (the numerical rank ``r``), :math:`B = \sqrt{\lambda_r}\, V \Lambda^{-1/2} V^\top`, so
    :math:`(BJ)(BJ)^\top = \lambda_r V V^\top`: orthogonal rows of equal norm
    :math:`\sqrt{\lambda_r}` when ``J`` has full row rank. Dropped directions get weight 0, by
    masks rather than branches; an all-zero ``G`` gives ``B = 0``.
    """
    gram, cutoff = compute_gramian(gramian, rtol, grads_dtype)
    eigenvalues, basis = torch.linalg.eigh(gram)
    largest = eigenvalues.amax(-1).clamp(min=0)
    kept = eigenvalues > cutoff * largest
    # σ_min² of J: the smallest eigenvalue kept (λ_max stands in when nothing is kept).
    smallest = torch.where(kept, eigenvalues, largest).amin(-1)
    scale = torch.where(kept, (smallest / torch.where(kept, eigenvalues, 1.0)).sqrt(), 0.0)
    return ((basis * scale[..., None, :]) @ basis.mT).to(gramian.dtype)


@named
def aligned_mtl(rtol: float | Tensor | None = None) -> Aggregator:
    r"""Aligned-MTL: replace the task gradients by the closest orthogonal set of equal norms.

    With the SVD :math:`J = U \Sigma V^\top` (rank ``r``), Aligned-MTL aligns the gradients to
    :math:`\hat J = \sigma_r U V^\top`, the solution of the Procrustes problem
    :math:`\min \lVert \hat J - J \rVert_F` over :math:`\hat J \hat J^\top = \sigma_r^2 I` scaled
    by the smallest non-zero singular value :math:`\sigma_r` (scale mode "min"), and steps along
    the sum of the aligned gradients (Algorithm 1; the official code sums, torchjd averages).
    From the eigen-decomposition :math:`G = J J^\top = V_\lambda \Lambda V_\lambda^\top`:

    .. math::
        \hat J = B J, \quad B = \sqrt{\lambda_r}\, V_\lambda \Lambda^{-1/2} V_\lambda^\top,
        \qquad d = \hat J^\top \mathbf 1 = J^\top (B \mathbf 1),

    so Aligned-MTL is a weighting of the Gramian with :math:`w = B \mathbf 1`. Eigenvalues at
    or below ``rtol · λ_max`` count as zero (masked, not branched on). The official code uses
    ``rtol = T · ε_float32``, which rounding noise in a float32 Gramian of exactly dependent
    gradients can exceed; the default here is 100 ε. Permutation invariant; the weights are
    invariant to a positive rescaling of ``J``, so the direction is linear in it.

    Args:
        rtol: relative eigenvalue cutoff for the numerical rank; ``None``: 100 machine
            epsilons of the Gramian's dtype (float32 or float64).

    Returns:
        An :class:`Aggregator` with ``weights``.

    Example:
        >>> import torch, funcmtl as fm
        >>> agg = fm.aggregators.aligned_mtl()
        >>> grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
        >>> direction, _ = agg.update(grads, agg.init(2))
        >>> direction  # both gradients rescaled to the smaller norm
        tensor([1., 1.])

    References:
        Dmitry Senushkin, Nikolay Patakin, Arseny Kuznetsov, Anton Konushin, `Independent
        Component Alignment for Multi-Task Learning <https://arxiv.org/abs/2305.19000>`_, 2023.
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
        return balance_transformation(gramian, rtol, grads_dtype).sum(-1), state

    return from_weighting(stateless_init, weights_fn, needs_grads_dtype=True)
