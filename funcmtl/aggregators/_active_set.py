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

import torch
from torch import Tensor

from funcmtl.aggregators._normalize import task_scale

KKT_TOLERANCE = 1e-10  # of the certificate, relative to the problem's size
MIN_PIVOT_RATIO = 1e-5  # smaller Cholesky pivots (condition ≳ 1e10): left to the IPM


def solve(q: Tensor, c: Tensor, total: float | None = None) -> Tensor | None:
    """``y (n,)`` for ``q (n, n)``, ``c (n,)`` (float64), or ``None`` when not certified."""
    totals = None if total is None else torch.full((1,), float(total), dtype=c.dtype)
    y, certified = solve_batch(q[None], c[None], totals)
    return y[0] if bool(certified[0]) else None


def solve_batch(q: Tensor, c: Tensor, totals: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(y (B, n), certified (B,))`` for the problems ``q (B, n, n)``, ``c (B, n)`` [and
    ``1ᵀy = totals (B,)``]: the steps run until every problem's free set repeats."""
    batch, n = c.shape
    # Unit-norm gradients' coordinates, y = u / s: Q's diagonal is 1 and the constraint
    # 1ᵀy = total becomes aᵀu = total with a = 1/s.
    s = task_scale(q)  # (B, n)
    unit = q / (s[:, :, None] * s[:, None, :])
    unit_c = c / s
    a = 1 / s
    # 1 on F, 0 on A. Solutions are sparse: start from the tasks the bound conflicts with
    # (c < 0), or on the simplex from the vertex of the shortest gradient.
    if totals is None:
        free = (unit_c < 0).to(c.dtype)
    else:
        free = torch.nn.functional.one_hot(s.argmin(-1), n).to(c.dtype)
    eye = torch.eye(n, dtype=c.dtype)
    nu = torch.zeros(batch, dtype=c.dtype)
    for _ in range(n + 2):
        # The KKT system on F, with y_A = 0: Q_FF on F, the identity on A (one n × n solve).
        system = free[:, :, None] * unit * free[:, None, :] + eye * (1 - free[:, :, None])
        factor, info = torch.linalg.cholesky_ex(system)
        u = torch.cholesky_solve((-free * unit_c)[..., None], factor)[..., 0]
        if totals is not None:  # ν from aᵀu = total, u_F = Q_FF⁻¹(−c_F + ν a_F)
            along = torch.cholesky_solve((free * a)[..., None], factor)[..., 0]
            nu = (totals - (a * u).sum(-1)) / (a * along).sum(-1)
            u = u + nu[:, None] * along
        z = ((unit @ u[..., None])[..., 0] + unit_c - nu[:, None] * a) * (1 - free)
        moved = ((u > 0) | (z < 0)).to(c.dtype)
        changed = (moved != free).any(-1)
        if not bool(changed.any()):
            break
        free = moved  # (the problems that did not change keep their set: moved == free)
    pivots = torch.diagonal(factor, dim1=-2, dim2=-1)
    sound = (info == 0) & (pivots.amin(-1) > MIN_PIVOT_RATIO * pivots.amax(-1)) & (
        torch.isfinite(nu))
    size = torch.maximum(unit_c.abs().amax(-1), nu.abs()).clamp(min=1.0)
    tolerance = KKT_TOLERANCE * size
    certified = (sound & ~changed & (u.amin(-1) >= -tolerance) & (z.amin(-1) >= -tolerance))
    return u.clamp(min=0) / s, certified
