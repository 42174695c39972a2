"""Closed forms of the solvers' problems for two tasks.

With ``T = 2`` every problem the aggregators solve has one or two unknowns, and its optimum is
a case analysis of a few scalars of the (normalised, ridged) Gramian ``Q``: a ``torch.where``
per case instead of an iterative solver. They are branch-free (valid under ``vmap``, on CUDA
and under ``torch.compile``), exact to float64 round-off, and cost a few dozen tiny ops where
the general solvers cost hundreds, which is the whole step's cost on small models with two
tasks (and on the two-objective toy problem).

All functions take ``q`` of shape ``(…, 2, 2)`` in float64, already ridged
(:func:`~funcmtl.aggregators._normalize.ridge`: positive diagonal, definite), and batch over
the leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _entries(q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return q[..., 0, 0], q[..., 0, 1], q[..., 1, 1]


def bound_qp(q: Tensor, c: Tensor) -> Tensor:
    """``argmin_{y ≥ 0} ½ yᵀQy + cᵀy``, ``y (…, 2)`` for ``c (…, 2)``.

    The KKT point is one of: ``y₁ = 0`` with ``y₀ = max(−c₀/Q₀₀, 0)`` (optimal when the
    gradient in ``y₁`` is then ``≥ 0``), the same with the roles swapped, or both free
    (``y = −Q⁻¹c``). Which one is read from those sign conditions.
    """
    q00, q01, q11 = _entries(q)
    c0, c1 = c[..., 0], c[..., 1]
    only0 = (-c0 / q00).clamp(min=0)  # y = (only0, 0)
    only1 = (-c1 / q11).clamp(min=0)  # y = (0, only1)
    det = q00 * q11 - q01 * q01
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    free0 = ((q01 * c1 - q11 * c0) / safe_det).clamp(min=0)
    free1 = ((q01 * c0 - q00 * c1) / safe_det).clamp(min=0)
    first = c1 + q01 * only0 >= 0
    second = c0 + q01 * only1 >= 0
    zero = torch.zeros_like(c0)
    y0 = torch.where(first, only0, torch.where(second, zero, free0))
    y1 = torch.where(first, zero, torch.where(second, only1, free1))
    return torch.stack([y0, y1], dim=-1)


def simplex_qp(q: Tensor, c: Tensor, total: Tensor) -> Tensor:
    """``argmin ½ yᵀQy + cᵀy  s.t.  y ≥ 0, y₀ + y₁ = total``, ``y (…, 2)``; ``total (…)``.

    On the segment ``y = (t, total − t)`` the objective is a parabola in ``t`` with curvature
    ``Q₀₀ − 2Q₀₁ + Q₁₁ > 0`` (``‖g₀ − g₁‖²`` plus the ridge): its vertex, clipped to
    ``[0, total]``.
    """
    q00, q01, q11 = _entries(q)
    curvature = q00 - 2 * q01 + q11
    t = (total * (q11 - q01) + c[..., 1] - c[..., 0]) / curvature
    t = torch.minimum(t.clamp(min=0), total)
    return torch.stack([t, total - t], dim=-1)


def cagrad_dual(q: Tensor, radius: Tensor) -> tuple[Tensor, Tensor]:
    """``(w, ‖g_w‖)`` with ``w = argmin_{w ∈ Δ} bᵀw + r √(wᵀQw)``, ``b = Q 1 / 2``, ``r (…)``.

    With ``w = (t, 1 − t)``: ``bᵀw = b₁ + α t`` (``α = (Q₀₀ − Q₁₁) / 2``) and
    ``wᵀQw = (s² + D) / (4A)`` where ``s = 2At + B``, ``A = Q₀₀ − 2Q₀₁ + Q₁₁``,
    ``B = 2(Q₀₁ − Q₁₁)`` and ``D = 4(Q₀₀Q₁₁ − Q₀₁²) ≥ 0``. The derivative
    ``α + r √A s / √(s² + D)`` vanishes at ``s = −ρ √(D / (1 − ρ²))`` with
    ``ρ = α / (r √A)`` when ``|ρ| < 1``; the objective is convex in ``t``, so its minimiser on
    ``[0, 1]`` is that point clipped, or the end the slope points to when ``|ρ| ≥ 1``.
    """
    q00, q01, q11 = _entries(q)
    a = q00 - 2 * q01 + q11
    b = 2 * (q01 - q11)
    gap = (4 * (q00 * q11 - q01 * q01)).clamp(min=0)
    alpha = (q00 - q11) / 2
    r = torch.as_tensor(radius, dtype=q.dtype, device=q.device)
    rho = alpha / (torch.where(r > 0, r, torch.ones_like(r)) * a.sqrt())
    interior = (rho.abs() < 1) & (r > 0)  # r = 0: the minimiser of bᵀw, a vertex
    s = -rho * (gap / torch.where(interior, 1 - rho * rho, torch.ones_like(rho))).sqrt()
    # t = (s − B) / 2A and 1 − t = (2(Q₀₀ − Q₀₁) − s) / 2A, each from its own formula: the
    # smaller one would lose its digits as 1 minus the other (w near a vertex).
    t = ((s - b) / (2 * a)).clamp(0, 1)
    u = ((2 * (q00 - q01) - s) / (2 * a)).clamp(0, 1)
    t, u = torch.where(t <= u, t, 1 - u), torch.where(t <= u, 1 - t, u)
    vertex = (alpha <= 0).to(q.dtype)  # |ρ| ≥ 1: the end the slope points to
    t, u = torch.where(interior, t, vertex), torch.where(interior, u, 1 - vertex)
    w = torch.stack([t, u], dim=-1)
    # wᵀQw term by term: t²A + tB + C cancels where one gradient is tiny
    norm = (t * t * q00 + 2 * t * u * q01 + u * u * q11).clamp(min=0).sqrt()
    return w, norm


def nash_point(q: Tensor) -> Tensor:
    """The ``α > 0`` with ``Qα = 1/α``, ``(…, 2)``.

    Dividing the two equations ``α₀(Q₀₀α₀ + Q₀₁α₁) = 1 = α₁(Q₀₁α₀ + Q₁₁α₁)`` gives
    ``(α₁/α₀)² = Q₀₀/Q₁₁``, so ``α₁ = √(Q₀₀/Q₁₁) α₀`` and
    ``α₀ = 1 / √(Q₀₀ + Q₀₁ √(Q₀₀/Q₁₁))`` (positive: the ridge keeps the gradients from
    being exactly opposite).
    """
    q00, q01, q11 = _entries(q)
    ratio = (q00 / q11).sqrt()
    first = (q00 + q01 * ratio).rsqrt()
    return torch.stack([first, ratio * first], dim=-1)
