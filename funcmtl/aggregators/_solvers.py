"""Small dense convex solvers on a ``(T, T)`` Gramian, with fixed iteration counts.

Every solver here is pure torch: no ``.item()``, no branch on a tensor value, no early exit.
That keeps them valid under ``torch.func.vmap`` (a batch of Gramians) and on CUDA without a
host sync. They iterate a fixed number of times chosen so that the optimum is reached to
float64 round-off on the problems met in multi-task learning (``T`` up to about 64, singular
and ill-conditioned Gramians included); the tests compare them with an independent float64
reference.

The problems and methods:

- :func:`solve_qp` — ``min ½ xᵀQx + cᵀx  s.t.  x ≥ lower  [and 1ᵀx = 1]``: a primal–dual
  interior-point method with Mehrotra's predictor–corrector (MGDA, UPGrad, DualProj).
- :func:`cagrad_shift` — CAGrad's ``max_d min_i g_iᵀd  s.t.  ‖d − g₀‖ ≤ r``, a convex QCQP,
  by a primal–dual interior-point method in the span of the gradients.
- :func:`nash_point` — the solution of ``Gα = 1/α, α > 0`` (Nash-MTL), the minimiser of the
  strictly convex ``½ αᵀGα − Σ log αᵢ``, by Newton's method with a vectorised line search.

All work in float64 on :func:`normalize`'s output: the Gramian divided by its mean diagonal
(the argmin of these problems is invariant to a positive scaling) and projected on the PSD
cone — in the coordinates of unit-norm gradients, so that tasks whose gradients are orders of
magnitude smaller keep their relative precision — because a float32 ``J Jᵀ`` of a
rank-deficient ``J`` has eigenvalues slightly below 0, which would make the problems
unbounded. Where a problem needs it to be bounded or to have a unique solution (linearly
dependent gradients), :func:`ridge` adds :data:`RIDGE` times the diagonal: a per-task
relative ridge that keeps the methods' invariance to each task's scale and moves the result
by about ``RIDGE`` times the condition number of the correlation matrix of the gradients.
The interior-point methods are started at points scaled per task in the same way, which
makes their iterates (in exact arithmetic) independent of the tasks' scales.
"""

from __future__ import annotations

import torch
from torch import Tensor

RIDGE = 1e-12  # relative to each task's squared gradient norm; see the module docstring
QP_ITERATIONS = 24  # interior-point iterations of solve_qp
QCQP_ITERATIONS = 24  # interior-point iterations of cagrad_shift
NEWTON_ITERATIONS = 60  # Newton steps of nash_point
_MU_FLOOR = 1e-40  # the central path is followed down to this complementarity, no further
_BOUNDARY = 0.995  # fraction-to-the-boundary factor of the interior-point steps


def normalize(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q, scale)``: ``Q ≈ G / scale`` in float64, symmetric PSD; ``scale`` = mean ``diag G``.

    ``scale`` is 1 where ``G = 0``. Negative eigenvalues (round-off) of the correlation matrix
    ``G_ij / √(G_ii G_jj)`` are set to 0; rows of zero gradients stay exactly 0.
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
    corr = (eigenvectors * eigenvalues.clamp(min=0)[..., None, :]) @ eigenvectors.mT
    q = corr * (norms[..., :, None] * norms[..., None, :])
    return (q + q.mT) / 2, scale[..., 0]


def ridge(q: Tensor, factor: float = RIDGE) -> Tensor:
    """``Q + factor · diag(Q)``, with ``factor`` itself on the diagonal of zero rows."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return q + torch.diag_embed(factor * torch.where(diag > 0, diag, torch.ones_like(diag)))


def _task_scale(q: Tensor) -> Tensor:
    """``√Q_ii`` (1 for zero gradients): the per-task scale of starting points."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return torch.where(diag > 0, diag, torch.ones_like(diag)).sqrt()


def _step_to_boundary(x: Tensor, dx: Tensor) -> Tensor:
    """The largest ``t`` with ``x + t dx ≥ 0`` over the last axis, for ``x > 0`` (~1e300 if
    ``dx ≥ 0``)."""
    return (x / (-dx).clamp(min=1e-300)).amin(-1)


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    return (m @ v[..., None])[..., 0]


def solve_qp(
    q: Tensor,
    linear: Tensor,
    lower: Tensor,
    *,
    simplex: bool = False,
    iterations: int = QP_ITERATIONS,
) -> Tensor:
    """``argmin ½ xᵀQx + cᵀx  s.t.  x ≥ lower`` (and ``1ᵀx = 1`` if ``simplex``), float64.

    ``q`` is a normalised PSD ``(…, n, n)`` (see :func:`normalize`); ``linear`` and ``lower``
    are ``(…, n)`` and broadcast against it, so one Gramian serves a batch of problems.

    Mehrotra's predictor–corrector on the shifted variable ``y = x − lower ≥ 0`` with dual
    slack ``z ≥ 0`` (and the multiplier ``ν`` of ``1ᵀx = 1``), from the infeasible start
    ``y = z = 1``. Each iteration factors ``Q + Z/Y`` once (Cholesky; its accuracy does not
    suffer from the badly scaled diagonal) and solves for the predictor and the corrector.
    """
    q = ridge(q)
    batch = torch.broadcast_shapes(q.shape[:-2], linear.shape[:-1], lower.shape[:-1])
    n = q.shape[-1]
    q = q.expand(*batch, n, n)
    lower = lower.expand(*batch, n)
    c = linear.expand(*batch, n) + _matvec(q, lower)  # the linear term in y
    total = 1 - lower.sum(-1)  # 1ᵀy on the simplex
    ones = torch.ones_like(c)
    if simplex:
        y, z = ones * total[..., None].clamp(min=1e-3) / n, ones
    else:  # scaled per task: the same iterates as for unit-norm gradients
        z = _task_scale(q)
        y = 1 / z
    nu = torch.zeros_like(total)[..., None]
    for _ in range(iterations):
        yz = y * z
        mu = yz.mean(-1, keepdim=True)
        gradient = _matvec(q, y) + c - nu  # r_dual = gradient − z
        chol = torch.linalg.cholesky_ex(q + torch.diag_embed(z / y)).L
        if simplex:
            inv_ones = torch.cholesky_solve(ones[..., None], chol)[..., 0]
            r_primal = y.sum(-1, keepdim=True) - total[..., None]

        def direction(rc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            # (Q + Z/Y) dy − dν 1 = −r_d + rc/y,   1ᵀdy = −r_p,   dz = (rc − z dy) / y.
            dy = torch.cholesky_solve((z - gradient + rc / y)[..., None], chol)[..., 0]
            dnu = torch.zeros_like(nu)
            if simplex:
                dnu = (-r_primal - dy.sum(-1, keepdim=True)) / inv_ones.sum(-1, keepdim=True)
                dy = dy + dnu * inv_ones
            return dy, (rc - z * dy) / y, dnu

        dy, dz, _ = direction(-yz)  # predictor (affine scaling)
        step = _step_to_boundary(torch.cat([y, z], -1), torch.cat([dy, dz], -1))
        step = step.clamp(max=1)[..., None]
        mu_affine = ((y + step * dy) * (z + step * dz)).mean(-1, keepdim=True)
        target = (mu * (mu_affine / mu).clamp(max=1) ** 3).clamp(min=_MU_FLOOR)
        dy, dz, dnu = direction(target - yz - dy * dz)  # corrector
        step = _step_to_boundary(torch.cat([y, z], -1), torch.cat([dy, dz], -1))
        step = (_BOUNDARY * step).clamp(max=1)[..., None]
        y, z, nu = y + step * dy, z + step * dz, nu + step * dnu
    return y + lower


def cagrad_shift(q: Tensor, radius: Tensor, *, iterations: int = QCQP_ITERATIONS) -> Tensor:
    """CAGrad's optimal shift ``a``: ``d = g₀ + Jᵀa`` maximises ``min_i g_iᵀd`` on the ball.

    The primal problem, written in the span of the gradients (``e = Jᵀa``, ``b = J g₀``)::

        max_{a, ν} ν   s.t.   b + Qa ≥ ν 1,   ½ aᵀQa ≤ ½ radius²

    with multipliers ``w ≥ 0`` (the CAGrad weights on the simplex) and ``κ ≥ 0`` (the ball);
    stationarity reads ``κ a = w`` and ``1ᵀw = 1``. ``q`` is normalised; ``radius`` is
    ``(…)`` in the same units (``c ‖g₀‖``) and must be positive.
    """
    q = ridge(q)
    n = q.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], radius.shape)
    q = q.expand(*batch, n, n)
    b = q.mean(-1)  # J g₀ = G 1 / T
    half_r2 = radius.expand(batch) ** 2 / 2
    ones = torch.ones_like(b)
    a = torch.zeros_like(b)
    w = ones / n
    kappa = torch.ones_like(half_r2)
    nu = b.amin(-1) - 1
    z = b - nu[..., None]
    sigma_ball = half_r2.clamp(min=1.0)  # slack of the ball constraint
    for _ in range(iterations):
        qa = _matvec(q, a)
        r1 = kappa[..., None] * a - w
        r2 = w.sum(-1) - 1
        r3 = z - b - qa + nu[..., None]
        r4 = sigma_ball - half_r2 + (a * qa).sum(-1) / 2
        mu = ((w * z).sum(-1) + kappa * sigma_ball) / (n + 1)
        d = z / w
        # Unknowns (Δa, Δκ, Δν) after eliminating Δw, Δz, Δσ; rows: complementarity of w∘z
        # (divided by w), of κσ, and 1ᵀw = 1.
        zero = torch.zeros_like(half_r2)[..., None]
        top = torch.cat(
            [q + torch.diag_embed(kappa[..., None] * d), (d * a)[..., None], -ones[..., None]], -1
        )
        ball_row = torch.cat([-kappa[..., None] * qa, sigma_ball[..., None], zero], -1)
        sum_row = torch.cat([kappa[..., None] * ones, a.sum(-1, keepdim=True), zero], -1)
        m = torch.cat([top, ball_row[..., None, :], sum_row[..., None, :]], -2)
        scale = torch.diagonal(m, dim1=-2, dim2=-1).abs().clamp(min=1.0).rsqrt()
        lu = torch.linalg.lu_factor_ex(scale[..., :, None] * m * scale[..., None, :])

        def direction(rc_w: Tensor, rc_k: Tensor, lu=lu, scale=scale, d=d, r1=r1, r3=r3, r4=r4):
            rhs = torch.cat(
                [
                    (rc_w - z * r1 + w * r3) / w,
                    (rc_k + kappa * r4)[..., None],
                    (-r2 - r1.sum(-1))[..., None],
                ],
                -1,
            )
            sol = scale * torch.linalg.lu_solve(lu.LU, lu.pivots, (scale * rhs)[..., None])[..., 0]
            da, dk, dnu = sol[..., :n], sol[..., n], sol[..., n + 1]
            dw = kappa[..., None] * da + a * dk[..., None] + r1
            dz = _matvec(q, da) - dnu[..., None] - r3
            ds = -(qa * da).sum(-1) - r4
            return da, dk, dnu, dw, dz, ds

        def max_step(dw, dz, dk, ds):
            return torch.stack(
                [
                    _step_to_boundary(w, dw),
                    _step_to_boundary(z, dz),
                    _step_to_boundary(kappa[..., None], dk[..., None]),
                    _step_to_boundary(sigma_ball[..., None], ds[..., None]),
                ],
                -1,
            ).amin(-1)

        _, dk, _, dw, dz, ds = direction(-w * z, -kappa * sigma_ball)
        step = max_step(dw, dz, dk, ds).clamp(max=1)
        t = step[..., None]
        mu_affine = (((w + t * dw) * (z + t * dz)).sum(-1) + (kappa + step * dk) * (
            sigma_ball + step * ds
        )) / (n + 1)
        centering = (mu_affine / mu).clamp(0, 1) ** 3
        target = (centering * mu).clamp(min=_MU_FLOOR)
        da, dk, dnu, dw2, dz2, ds2 = direction(
            target[..., None] - w * z - dw * dz, target - kappa * sigma_ball - dk * ds
        )
        step = (_BOUNDARY * max_step(dw2, dz2, dk, ds2)).clamp(max=1)
        t = step[..., None]
        a, w, z = a + t * da, w + t * dw2, z + t * dz2
        kappa, nu, sigma_ball = kappa + step * dk, nu + step * dnu, sigma_ball + step * ds2
    return a


def nash_point(q: Tensor, *, iterations: int = NEWTON_ITERATIONS) -> Tensor:
    """The ``α > 0`` with ``(Q + ridge) α = 1/α``, float64, for a normalised PSD ``q``."""
    q = ridge(q)
    n = q.shape[-1]
    # Start on the ray α = t / √diag(Q) at its best t (f = ½ t² ρ − n log t + const), so that
    # the iterates do not depend on the tasks' scales.
    ray = 1 / _task_scale(q)
    alpha = ray * (n / (ray * _matvec(q, ray)).sum(-1, keepdim=True)).sqrt()
    trials = 0.5 ** torch.arange(12, dtype=q.dtype, device=q.device)  # line-search steps

    def objective(x: Tensor) -> Tensor:
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        value = (x * _matvec(q[..., None, :, :], x)).sum(-1) / 2 - safe.log().sum(-1)
        return torch.where(positive.all(-1), value, torch.inf)

    for _ in range(iterations):
        grad = _matvec(q, alpha) - 1 / alpha
        hess = q + torch.diag_embed(alpha**-2)
        delta = -torch.linalg.solve(hess, grad)
        slope = (grad * delta).sum(-1)  # −λ², λ the Newton decrement
        candidates = alpha[..., None, :] + trials[:, None] * delta[..., None, :]
        accept = objective(candidates) <= objective(alpha[..., None, :]) + 0.25 * trials * slope[
            ..., None
        ]
        # The largest accepted trial; the damped step 1/(1+λ) is always safe (self-concordance).
        best = torch.where(accept, trials, torch.zeros_like(trials)).amax(-1)
        step = torch.maximum(best, 1 / (1 + (-slope).clamp(min=0).sqrt()))
        alpha = alpha + step[..., None] * delta
    return alpha


def project_weights(gramian: Tensor, lower: Tensor, reg_eps: float = 0.0) -> Tensor:
    """``argmin_{v ≥ lower} vᵀGv`` (float64): ``Jᵀv`` is ``Jᵀlower`` projected on the dual cone.

    ``lower`` is ``(…, T)``, one problem per row (Quinton & Rey, 2024, Proposition 1). As in
    torchjd, ``reg_eps`` is added to the diagonal of ``G / tr(G)`` (0 solves the exact problem).
    """
    g = gramian.to(torch.float64)
    if reg_eps > 0:
        trace = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)
        g = g / torch.where(trace > 0, trace, torch.ones_like(trace))[..., None, None]
        g = g + reg_eps * torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    q, _ = normalize(g)
    lower = lower.to(q)
    return solve_qp(q, torch.zeros_like(lower), lower)
