"""An exact active-set solve of one small QP, for eager CPU calls: a few tiny linear solves
instead of the interior-point method's fixed iterations, with a KKT certificate.

``min ½ yᵀQy + cᵀy  s.t.  y ≥ 0  [and 1ᵀy = total]`` on a ridged, normalised ``Q``: the
primal–dual active-set method (Hintermüller, Ito & Kunisch, SIAM J. Optim. 2002) solves the
KKT system on a guessed free set ``F`` (``y_A = 0``), reads the multipliers ``z = Qy + c − ν1``
of the others, and moves ``i`` to ``A`` where ``y_i < 0`` and to ``F`` where ``z_i < 0``,
until the set repeats. In exact arithmetic its last iterate is the optimum exactly (the
problem is strictly convex); it is returned only with a certificate — ``y ≥ 0``, ``z ≥ 0`` to
:data:`KKT_TOLERANCE` on a free block whose Cholesky pivots are well conditioned — and
``None`` otherwise (then the caller runs the interior-point method). It reads tensor values
to branch, so it is only for eager CPU tensors (:func:`~funcmtl.aggregators._normalize.
may_branch`); under ``vmap`` or on an accelerator the fixed-count solvers run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from funcmtl.aggregators._normalize import task_scale

KKT_TOLERANCE = 1e-10  # of the certificate, relative to the problem's size
MIN_PIVOT_RATIO = 1e-5  # smaller Cholesky pivots (condition ≳ 1e10): left to the IPM


def solve(q: Tensor, c: Tensor, total: float | None = None) -> Tensor | None:
    """``y (n,)`` for ``q (n, n)``, ``c (n,)`` (float64), or ``None`` when not certified."""
    n = c.shape[-1]
    # Unit-norm gradients' coordinates, y = u / s: Q's diagonal is 1 and the constraint
    # 1ᵀy = total becomes aᵀu = total with a = 1/s.
    s = task_scale(q)
    unit = q / (s[:, None] * s[None, :])
    unit_c = c / s
    a = 1 / s
    free = torch.ones(n, dtype=c.dtype)  # 1 on F, 0 on A
    size = max(float(unit_c.abs().max()), 1.0)
    eye = torch.eye(n, dtype=c.dtype)
    for _ in range(n + 2):
        # The KKT system on F, with y_A = 0: Q_FF on F, the identity on A (one n × n solve).
        system = free[:, None] * unit * free[None, :] + eye * (1 - free)
        factor, info = torch.linalg.cholesky_ex(system)
        pivots = factor.diagonal()
        u = torch.cholesky_solve((-free * unit_c)[:, None], factor)[:, 0]
        nu = torch.zeros((), dtype=c.dtype)
        if total is not None:  # ν from aᵀu = total, u_F = Q_FF⁻¹(−c_F + ν a_F)
            along = torch.cholesky_solve((free * a)[:, None], factor)[:, 0]
            nu = (total - a @ u) / (a @ along)
            u = u + nu * along
        z = (unit @ u + unit_c - nu * a) * (1 - free)
        moved = ((u > 0) | (z < 0)).to(c.dtype)
        checks = torch.stack([info.to(c.dtype), pivots.min() / pivots.max(), (moved != free)
                              .any().to(c.dtype), u.min(), z.min(), nu.abs()]).tolist()
        failed, ratio, changed, u_min, z_min, nu_size = checks
        if failed or not ratio > MIN_PIVOT_RATIO or not math.isfinite(nu_size):
            return None  # a (nearly) dependent free block: the IPM handles it
        if not changed:
            tolerance = KKT_TOLERANCE * max(size, nu_size)
            if u_min < -tolerance or z_min < -tolerance:
                return None
            return u.clamp(min=0) / s
        free = moved
        if total is not None and not free.any():
            return None  # the simplex needs a free coordinate
    return None
