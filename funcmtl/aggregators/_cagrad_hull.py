"""CAGrad's direction from its dual, and the case the dual cannot settle: 0 in the hull.

The primal problem (Liu et al., 2021, Eq. 2) is ``ν* = max_{‖d − g₀‖ ≤ r} min_i g_iᵀd``, and
its dual ``min_{w ∈ Δ} F(w) = g_wᵀg₀ + r ‖g_w‖`` gives ``d = g₀ + r g_w / ‖g_w‖`` when its
minimiser has ``g_w ≠ 0``. When 0 is in the convex hull of the gradients and the ball meets
the dual cone ``{d : J d ≥ 0}`` (always if ``r ≥ ‖g₀‖``), ``ν* = 0 = F(w*)`` with ``g_{w*} = 0``:
every ``d`` of the ball in the cone is optimal and the dual's formula divides round-off by
round-off. Then ``d`` is the projection of ``g₀`` onto the cone, the optimum closest to ``g₀``
(which is what the formula gives, in the limit, wherever ``ν*`` approaches 0).

Which case holds is read from a certificate: the duality gap ``F(w) − min_i g_iᵀd`` of the
dual's ``d``, 0 at the optimum. Only a ``d`` with a gap is replaced, and only by a projection
that lies in the ball and does better.
"""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl.aggregators._cagrad_dual import cagrad_weights
from funcmtl.aggregators._normalize import matvec, may_branch
from funcmtl.aggregators._qp import solve_qp

GAP_TOLERANCE = 1e-9  # of the duality gap, in units of max‖g_i‖ (‖g₀‖ + r)
BALL_SLACK = 1e-9  # a projection may exceed the radius by this fraction (its own round-off)


def ball_weights(q: Tensor, radius: Tensor | float) -> Tensor:
    """``x (…, T)`` float64 with ``d = Jᵀx`` CAGrad's direction (before ``rescale``).

    ``q`` is the normalised Gramian ``(…, T, T)`` (:func:`~funcmtl.aggregators._normalize.
    normalize`), ``radius`` is ``c ‖g₀‖`` in its units, ``(…)``; ``radius = 0`` gives the mean.
    """
    n = q.shape[-1]
    radius = torch.as_tensor(radius, dtype=q.dtype, device=q.device)
    mean = torch.full_like(q[..., 0], 1 / n)
    w, norm = cagrad_weights(q, radius)
    # d = g₀ + (r / ‖g_w‖) g_w. The floor keeps the weights ≤ 1e6 where ‖g_w‖ is round-off;
    # it scales with the norms of the gradients w weighs, which may all be tiny.
    roots = torch.diagonal(q, dim1=-2, dim2=-1).clamp(min=0).sqrt()
    spread = (w * roots).sum(-1) / roots.amax(-1).clamp(min=torch.finfo(q.dtype).tiny)
    floor = torch.maximum(norm, 1e-6 * radius * spread)
    x = (
        mean
        + torch.where(radius > 0, radius / torch.where(radius > 0, floor, 1.0), 0.0)[..., None] * w
    )
    value = matvec(q, x).amin(-1)  # min_i g_iᵀd
    dual = (q.mean(-1) * w).sum(-1) + radius * norm  # F(w) ≥ ν* ≥ value
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    unit = diag.amax(-1).sqrt() * (q.mean((-2, -1)).clamp(min=0).sqrt() + radius)
    uncertified = dual - value > GAP_TOLERANCE * unit
    if may_branch(q, radius) and not bool(uncertified.any()):
        return x  # the common case, on CPU: no projection to compute
    # argmin_{v ≥ 1/T} vᵀQv: Jᵀv is the projection of g₀ onto {d : J d ≥ 0}.
    v = solve_qp(q, torch.zeros_like(mean), mean)
    offset = v - mean
    distance = (offset * matvec(q, offset)).sum(-1).clamp(min=0).sqrt()
    inside = distance <= radius * (1 + BALL_SLACK)
    better = matvec(q, v).amin(-1) > value
    return torch.where((uncertified & inside & better)[..., None], v, x)
