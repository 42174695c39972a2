"""A primal–dual interior-point method for ``min f(y)  s.t.  y ≥ 0  [and 1ᵀy = total]``,
``f`` smooth and convex, with Mehrotra's predictor–corrector (Nocedal & Wright, Numerical
Optimization, 2006, §14.2): one Cholesky factorisation per iteration, fixed iterations."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

_MU_FLOOR = 1e-40  # the central path is followed down to this complementarity, no further
_BOUNDARY = 0.995  # fraction-to-the-boundary factor of the interior-point steps

Objective = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (y, μ) -> (gradient, Hessian)


def _step_to_boundary(x: Tensor, dx: Tensor) -> Tensor:
    """The largest ``t`` with ``x + t dx ≥ 0`` on the last axis, for ``x > 0`` (~1e300 if none
    is needed), with a trailing axis of size 1."""
    return (x / (-dx).clamp(min=1e-300)).amin(-1, keepdim=True)


def _newton_direction(chol, inv_ones, y, z, gradient, nu, r_primal, rc):
    """Solve ``(H + Z/Y) dy − dν 1 = −(gradient − ν − z) + rc/y``, ``1ᵀdy = −r_primal``
    (only with ``inv_ones``, the simplex case) and return ``(dy, dz, dν)``."""
    dy = torch.cholesky_solve((z - gradient + nu + rc / y)[..., None], chol)[..., 0]
    dnu = torch.zeros_like(r_primal)
    if inv_ones is not None:
        dnu = (-r_primal - dy.sum(-1, keepdim=True)) / inv_ones.sum(-1, keepdim=True)
        dy = dy + dnu * inv_ones
    return dy, (rc - z * dy) / y, dnu


def interior_point(
    objective: Objective,
    y: Tensor,
    z: Tensor,
    total: Tensor | None,
    iterations: int,
    nu: Tensor | None = None,
) -> Tensor:
    """``argmin f(y)  s.t.  y ≥ 0  [and 1ᵀy = total]`` for a smooth convex ``f``.

    ``objective(y, μ)`` returns ``∇f`` and ``∇²f``. Mehrotra's predictor–corrector from the
    start ``(y, z, ν)`` (``ν = 0`` by default), ``z`` the multipliers of ``y ≥ 0``: each iteration
    factors ``∇²f + Z/Y`` once (Cholesky, whose accuracy does not suffer from the badly scaled
    diagonal) and solves for the predictor and the corrector; one step length for all
    variables, a fraction ``_BOUNDARY`` of the way to the boundary.
    """
    nu = torch.zeros_like(y[..., :1]) if nu is None else nu
    r_primal = torch.zeros_like(nu)
    inv_ones = None
    for _ in range(iterations):
        yz = y * z
        mu = yz.mean(-1, keepdim=True)
        gradient, hessian = objective(y, mu)
        system = hessian + torch.diag_embed(z / y)
        if total is not None:
            # + γ 11ᵀ leaves dy unchanged under 1ᵀdy = −r_primal (dν absorbs it) and makes the
            # system definite when ∇²f is only definite on {1ᵀv = 0} (as CAGrad's is).
            gamma = torch.diagonal(hessian, dim1=-2, dim2=-1).mean(-1, keepdim=True).abs() + 1
            system = system + gamma[..., None]
        chol = torch.linalg.cholesky_ex(system).L
        if total is not None:
            inv_ones = torch.cholesky_solve(torch.ones_like(y)[..., None], chol)[..., 0]
            r_primal = y.sum(-1, keepdim=True) - total
        state = (chol, inv_ones, y, z, gradient, nu, r_primal)
        dy, dz, _ = _newton_direction(*state, -yz)  # predictor (affine scaling)
        step = _step_to_boundary(torch.cat([y, z], -1), torch.cat([dy, dz], -1)).clamp(max=1)
        mu_affine = ((y + step * dy) * (z + step * dz)).mean(-1, keepdim=True)
        target = (mu * (mu_affine / mu).clamp(max=1) ** 3).clamp(min=_MU_FLOOR)
        dy, dz, dnu = _newton_direction(*state, target - yz - dy * dz)  # corrector
        if total is not None:
            dnu = dnu + gamma * r_primal  # the multiplier of the unmodified system
        step = _step_to_boundary(torch.cat([y, z], -1), torch.cat([dy, dz], -1))
        step = (_BOUNDARY * step).clamp(max=1)
        # A failed factorisation (never seen in the tests) leaves the iterate where it is.
        finite = torch.isfinite(dy).all(-1, keepdim=True) & torch.isfinite(dz).all(-1, keepdim=True)
        step = torch.where(finite, step, 0.0)
        y, z = y + step * dy.nan_to_num(), z + step * dz.nan_to_num()
        nu = nu + step * dnu.nan_to_num()
    return y
