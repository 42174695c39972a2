"""CAGrad's dual solved exactly by a parametric active-set method, for eager CPU calls.

At the optimum ``w`` of ``min_{w ∈ Δ} bᵀw + r ρ(w)``, ``ρ(w) = √(wᵀQw) > 0``, the KKT
conditions are those of the QP ``min_{w ∈ Δ} bᵀw + (λ/2) wᵀQw`` with ``λ = r / ρ(w)``. The
QP's solutions form a piecewise-affine path in ``μ = 1/λ`` (Best, 1996, parametric QP): on a
free set ``F`` (``w_A = 0``), with ``M = Q_FF⁻¹`` and the constraint written ``aᵀw = 1``,

    w_F(μ) = p + μ d,   p = M a / (aᵀM a),   d = (aᵀM b_F / aᵀM a) M a − M b_F,

and the multipliers of ``A`` are affine in ``μ`` too. The path starts at ``μ = 0`` from MGDA's
minimum-norm point (where ``ρ > r μ``) and follows segment after segment (a coordinate of
``F`` reaching 0 leaves it, a multiplier of ``A`` reaching 0 enters) until ``ρ(w(μ)) = r μ``,
on a segment the quadratic ``ρ_p² + (dᵀQd − r²) μ² = 0`` (``pᵀQd = 0``). The answer is
returned only with a certificate (``w ≥ 0``, multipliers ``≥ 0`` to :data:`KKT_TOLERANCE`, a
well-conditioned ``Q_FF``), else ``None`` and the caller runs the barrier/interior-point
solver. It reads values to branch: eager CPU tensors only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from funcmtl.aggregators import _active_set as active_set
from funcmtl.aggregators._normalize import task_scale

KKT_TOLERANCE = 1e-10  # of the certificate, relative to the problem's size
MIN_PIVOT_RATIO = 1e-5  # smaller Cholesky pivots (condition ≳ 1e10): left to the fallback


def solve(q: Tensor, b: Tensor, radius: float) -> Tensor | None:
    """``w (n,)`` on the simplex for a ridged, normalised ``q (n, n)``, ``b = q 1 / n`` and
    ``radius = r > 0`` (float64), or ``None`` when not certified."""
    n = b.shape[-1]
    start = active_set.solve(q, torch.zeros_like(b), 1.0)  # μ = 0: MGDA's point
    if start is None:
        return None
    # Unit-norm gradients' coordinates u = s w: unit diagonal, constraint aᵀu = 1, a = 1/s.
    s = task_scale(q)
    unit, unit_b, a = q / (s[:, None] * s[None, :]), b / s, 1 / s
    free = (start > 0).to(q.dtype)
    eye = torch.eye(n, dtype=q.dtype)
    size = max(float(unit_b.abs().max()), 1.0)
    mu_low = 0.0
    for _ in range(2 * n + 2):
        system = free[:, None] * unit * free[None, :] + eye * (1 - free)
        factor, info = torch.linalg.cholesky_ex(system)
        pivots = factor.diagonal()
        m_a = torch.cholesky_solve((free * a)[:, None], factor)[:, 0]
        m_b = torch.cholesky_solve((free * unit_b)[:, None], factor)[:, 0]
        a_ma, a_mb = a @ m_a, a @ m_b
        p = m_a / a_ma
        d = (a_mb / a_ma) * m_a - m_b
        # Multipliers of A along the segment, times μ: z0 + μ z1.
        z0 = (unit @ p - a / a_ma) * (1 - free)
        z1 = (unit @ d + unit_b - (a_mb / a_ma) * a) * (1 - free)
        values = torch.stack([p @ unit @ p, d @ unit @ d, info.to(q.dtype),
                              pivots.min() / pivots.max()]).tolist()
        rho_p2, d_qd, failed, ratio = values
        if failed or not ratio > MIN_PIVOT_RATIO:
            return None
        # Where the segment ends: a free coordinate or a multiplier of A reaching 0.
        leave = torch.where((free > 0) & (d < 0), -p / torch.where(d < 0, d, -1.0), math.inf)
        enter = torch.where((free == 0) & (z1 < 0), -z0 / torch.where(z1 < 0, z1, -1.0),
                            math.inf)
        ends = torch.cat([leave, enter]).clamp(min=mu_low)
        mu_high, index = (float(x) for x in ends.min(0))
        mu_root = math.sqrt(rho_p2 / (radius**2 - d_qd)) if d_qd < radius**2 else math.inf
        if mu_root <= mu_high:
            u = p + mu_root * d
            z = z0 + mu_root * z1
            tolerance = KKT_TOLERANCE * max(size, mu_root)
            if float(u.min()) < -tolerance or float(z.min()) < -tolerance:
                return None
            w = u.clamp(min=0) / s
            return w / w.sum()
        if not math.isfinite(mu_high):
            return None
        free = free.clone()
        free[int(index) % n] = 1.0 - free[int(index) % n]  # leaves F (< n) or enters it
        mu_low = mu_high
    return None
