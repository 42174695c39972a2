"""The Gramian in the coordinates the solvers work in, and their shared small helpers.

Every solver of :mod:`funcmtl.aggregators` works in float64 on :func:`normalize`'s output: the
Gramian divided by its mean diagonal (the argmin of these problems is invariant to a positive
scaling) and projected on the PSD cone — in the coordinates of unit-norm gradients, so that
tasks whose gradients are orders of magnitude smaller keep their relative precision — because
a float32 ``J Jᵀ`` of a rank-deficient ``J`` has eigenvalues slightly below 0, which would make
the problems unbounded. :func:`ridge` then adds :data:`RIDGE` times the diagonal: a per-task
relative ridge that makes every problem bounded with a unique solution when the gradients are
linearly dependent, keeps the methods' invariance to each task's scale, and moves the result
by about ``RIDGE`` times the condition number of the gradients' correlation matrix. The
iterates start from points scaled per task in the same way (:func:`task_scale`), so that (in
exact arithmetic) they do not depend on the tasks' scales either.

The solvers are pure torch: no ``.item()``, no branch on a tensor value, no early exit, so
they are valid under ``torch.func.vmap`` (a batch of Gramians) and on CUDA without a host
sync; they iterate a fixed number of times, chosen so that the optimum is reached to float64
round-off on the problems met in multi-task learning (``T`` up to about 64, singular and
ill-conditioned Gramians, gradient norms spread over many orders of magnitude). The only
exception is :func:`may_branch`: a host-side shortcut taken where it is free.
"""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl.optim._checks import _readable as readable

RIDGE = 1e-12  # relative to each task's squared gradient norm; see the module docstring


def factorize(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """``(L, scale)`` with ``L Lᵀ = Q ≈ G / scale`` in float64; ``scale`` = mean ``diag G``.

    ``scale`` is 1 where ``G = 0``. ``L = N V Λ₊^½`` from the eigendecomposition ``V Λ Vᵀ`` of
    the correlation matrix ``G_ij / √(G_ii G_jj)``, ``N`` the gradients' norms and ``Λ₊`` the
    eigenvalues clipped at 0 (round-off); rows of zero gradients are exactly 0.
    """
    g = gramian.to(torch.float64)
    g = (g + g.mT) / 2
    diag = torch.diagonal(g, dim1=-2, dim2=-1).clamp(min=0)
    scale = diag.mean(-1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    norms = (diag / scale).sqrt()  # ‖g_i‖ in units of the root mean square norm
    nonzero = norms > 0
    inverse = torch.where(nonzero, 1 / torch.where(nonzero, norms, 1.0), 0.0)
    outer = inverse[..., :, None] * inverse[..., None, :]
    eigenvalues, eigenvectors = torch.linalg.eigh(g / scale[..., None] * outer)
    factor = norms[..., None] * eigenvectors * eigenvalues.clamp(min=0).sqrt()[..., None, :]
    return factor, scale[..., 0]


def normalize(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q, scale)``: ``Q = L Lᵀ ≈ G / scale``, symmetric PSD (see :func:`factorize`)."""
    if gramian.shape[-1] == 2:
        return _normalize_two(gramian)
    factor, scale = factorize(gramian)
    q = factor @ factor.mT
    return (q + q.mT) / 2, scale


def _normalize_two(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`normalize` for ``T = 2``: the correlation matrix ``[[1, ρ], [ρ, 1]]`` (eigenvalues
    ``1 ± ρ``) is made PSD by clipping ``ρ`` to ``[−1, 1]``, the nearest correlation matrix
    (where :func:`factorize` clips an eigenvalue; they differ by ``|ρ| − 1``, round-off)."""
    g = gramian.to(torch.float64)
    diag = torch.diagonal(g, dim1=-2, dim2=-1).clamp(min=0)
    scale = diag.mean(-1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    diag = diag / scale[..., None]
    bound = (diag[..., 0] * diag[..., 1]).sqrt()
    off = ((g[..., 0, 1] + g[..., 1, 0]) / (2 * scale)).clamp(min=-bound, max=bound)
    q = torch.stack([diag[..., 0], off, off, diag[..., 1]], dim=-1)
    return q.unflatten(-1, (2, 2)), scale


def ridge(q: Tensor, factor: float = RIDGE) -> Tensor:
    """``Q + factor · diag(Q)``, with ``factor`` itself on the diagonal of zero rows."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return q + torch.diag_embed(factor * torch.where(diag > 0, diag, torch.ones_like(diag)))


def task_scale(q: Tensor) -> Tensor:
    """``√Q_ii`` (1 for zero gradients): the per-task scale of starting points."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return torch.where(diag > 0, diag, torch.ones_like(diag)).sqrt()


def matvec(m: Tensor, v: Tensor) -> Tensor:
    return (m @ v[..., None])[..., 0]


def may_branch(*tensors: Tensor) -> bool:
    """Whether a host-side branch on these tensors' values is free and allowed: eager CPU
    tensors, not wrapped by a ``torch.func`` transform nor traced by ``torch.compile`` (on
    CUDA it would be a sync)."""
    return all(map(readable, tensors))
