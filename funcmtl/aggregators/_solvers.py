"""Small dense convex solvers on a ``(T, T)`` Gramian, with fixed iteration counts.

Every solver here is pure torch: no ``.item()``, no branch on a tensor value, no early exit.
That keeps them valid under ``torch.func.vmap`` (a batch of Gramians) and on CUDA without a
host sync. They iterate a fixed number of times, chosen so that the optimum is reached to
float64 round-off on the problems met in multi-task learning (``T`` up to about 64, singular
and ill-conditioned Gramians, gradient norms spread over many orders of magnitude); the tests
compare them with independent float64 references.

The problems and methods:

- :func:`solve_qp` — ``min ½ xᵀQx + cᵀx  s.t.  x ≥ lower  [and 1ᵀx = 1]`` (MGDA, UPGrad,
  DualProj): a primal–dual interior-point method with Mehrotra's predictor–corrector
  (:func:`_interior_point`), one Cholesky factorisation per iteration. A batch of bound-only
  problems on one shared Gramian (UPGrad's ``T`` projections) is first tried by the much
  cheaper :func:`_shared_bound_qp` (ADMM with one eigendecomposition, then an exact
  active-set solve whose KKT conditions are checked); only the problems it does not certify
  go to the interior-point method. Picking those problems out is a host-side branch, taken
  only in eager CPU code; under ``vmap`` (or on CUDA) every problem goes through both solvers
  and the certificate selects, so that the results agree with the eager ones.
- :func:`cagrad_weights` — ``min_{w ∈ Δ} bᵀw + r √(wᵀQw)`` (CAGrad's dual): a barrier method
  on its second-order-cone form to get near the optimum from anywhere, then
  :func:`_interior_point` on a smoothed objective to finish exactly.
- :func:`nash_point` — the solution of ``Qα = 1/α, α > 0`` (Nash-MTL), the minimiser of the
  strictly convex ``½ αᵀQα − Σ log αᵢ``: Newton's method with a vectorised line search.

All work in float64 on :func:`normalize`'s output: the Gramian divided by its mean diagonal
(the argmin of these problems is invariant to a positive scaling) and projected on the PSD
cone — in the coordinates of unit-norm gradients, so that tasks whose gradients are orders of
magnitude smaller keep their relative precision — because a float32 ``J Jᵀ`` of a
rank-deficient ``J`` has eigenvalues slightly below 0, which would make the problems
unbounded. :func:`ridge` then adds :data:`RIDGE` times the diagonal: a per-task relative
ridge that makes every problem bounded with a unique solution when the gradients are linearly
dependent, keeps the methods' invariance to each task's scale, and moves the result by about
``RIDGE`` times the condition number of the gradients' correlation matrix. The iterates start
from points scaled per task in the same way, so that (in exact arithmetic) they do not depend
on the tasks' scales either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RIDGE = 1e-12  # relative to each task's squared gradient norm; see the module docstring
QP_ITERATIONS = 20  # interior-point iterations of solve_qp (converged after ~16 in the tests)
CAGRAD_STAGES, CAGRAD_STEPS = 6, 4  # barrier stages × Newton steps of cagrad_weights
CAGRAD_TAU0, CAGRAD_GROWTH = 1.0, 10.0  # the barrier parameters τ₀ μᵏ
CAGRAD_ITERATIONS = 20  # then interior-point iterations on CAGrad's smooth dual
NEWTON_ITERATIONS = 30  # Newton steps of nash_point (converged after ~20 in the tests)
ADMM_ITERATIONS = 30  # of _shared_bound_qp, enough to find the active set of full-rank problems
ACTIVE_SET_STEPS = 2  # exact solves on the active set guessed by ADMM, then by the last solve
KKT_TOLERANCE = 1e-10  # of _shared_bound_qp's certificate, relative to the problem's size
MIN_PIVOT_RATIO = 1e-5  # smaller Cholesky pivots (condition ≳ 1e10): left to the IPM
_MU_FLOOR = 1e-40  # the central path is followed down to this complementarity, no further
_BOUNDARY = 0.995  # fraction-to-the-boundary factor of the interior-point steps

Objective = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (y, μ) -> (gradient, Hessian)


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
    factor, scale = factorize(gramian)
    q = factor @ factor.mT
    return (q + q.mT) / 2, scale


def ridge(q: Tensor, factor: float = RIDGE) -> Tensor:
    """``Q + factor · diag(Q)``, with ``factor`` itself on the diagonal of zero rows."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return q + torch.diag_embed(factor * torch.where(diag > 0, diag, torch.ones_like(diag)))


def _task_scale(q: Tensor) -> Tensor:
    """``√Q_ii`` (1 for zero gradients): the per-task scale of starting points."""
    diag = torch.diagonal(q, dim1=-2, dim2=-1)
    return torch.where(diag > 0, diag, torch.ones_like(diag)).sqrt()


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    return (m @ v[..., None])[..., 0]


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


def _interior_point(
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


def solve_qp(
    q: Tensor,
    linear: Tensor,
    lower: Tensor,
    *,
    simplex: bool = False,
    iterations: int = QP_ITERATIONS,
) -> Tensor:
    """``argmin ½ xᵀQx + cᵀx  s.t.  x ≥ lower`` (and ``1ᵀx = 1`` if ``simplex``), float64.

    ``q`` is a normalised PSD ``(…, n, n)`` (see :func:`normalize`), to which :func:`ridge` is
    added; ``linear`` and ``lower`` are ``(…, n)`` and broadcast against it, so that one
    Gramian serves a batch of problems. Solved on ``y = x − lower ≥ 0`` by
    :func:`_interior_point`, or, for a batch of bound-only problems on one ``(n, n)`` ``q``, by
    :func:`_shared_bound_qp` wherever it certifies its result.
    """
    q = ridge(q)
    batch = torch.broadcast_shapes(q.shape[:-2], linear.shape[:-1], lower.shape[:-1])
    n = q.shape[-1]
    lower = lower.expand(*batch, n)
    c = linear.expand(*batch, n) + _matvec(q, lower)  # the linear term in y
    if simplex:
        return _bounded_interior_point(q.expand(*batch, n, n), c, lower, iterations) + lower
    if q.dim() != 2 or not batch:
        return _bounded_interior_point(q.expand(*batch, n, n), c, None, iterations) + lower
    # One Gramian shared by a batch of problems: the cheap solver certifies most of them.
    rows = c.reshape(-1, n)
    y, certified = _shared_bound_qp(q, rows)
    if _may_branch(q, c):
        if not bool(certified.all()):
            rest = ~certified
            y[rest] = _bounded_interior_point(q, rows[rest], None, iterations)
    else:  # the same result without a host-side branch: every row through both solvers
        fallback = _bounded_interior_point(q, rows, None, iterations)
        y = torch.where(certified[:, None], y, fallback)
    return y.reshape(*batch, n) + lower


def _may_branch(*tensors: Tensor) -> bool:
    """Whether a host-side branch on these tensors' values is free and allowed: eager CPU
    tensors, not wrapped by a ``torch.func`` transform (on CUDA it would be a sync)."""
    return all(
        t.device.type == "cpu" and not torch._C._functorch.is_functorch_wrapped_tensor(t)
        for t in tensors
    )


def _bounded_interior_point(q: Tensor, c: Tensor, lower: Tensor | None, iterations: int):
    """``argmin ½ yᵀQy + cᵀy  s.t.  y ≥ 0`` [and ``1ᵀy = 1 − 1ᵀlower`` when ``lower`` is
    given: the simplex case] by :func:`_interior_point`; ``q`` ridged, broadcast against ``c``."""
    q = q.expand(*c.shape, c.shape[-1])
    total = None
    if lower is not None:
        total = 1 - lower.sum(-1, keepdim=True)
        y = torch.ones_like(c) * total.clamp(min=1e-3) / c.shape[-1]
        z = torch.ones_like(c)
    else:
        # Scaled per task and per problem (c ↦ ρc scales the solution by ρ): the iterates are
        # those of unit-norm gradients and a unit linear term.
        task = _task_scale(q)
        size = (c / task).abs().amax(-1)
        size = torch.where(size > 0, size, torch.ones_like(size))[..., None]
        y, z = size / task, size * task

    def objective(y: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
        del mu
        return _matvec(q, y) + c, q

    return _interior_point(objective, y, z, total, iterations)


def _shared_bound_qp(q: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(y, certified)`` for ``argmin ½ yᵀQy + cᵀy  s.t.  y ≥ 0``, one problem per row of
    ``c (B, n)``, all on one ridged ``q (n, n)``.

    In the coordinates of unit-norm gradients (``Q`` with unit diagonal), over-relaxed ADMM
    (Boyd et al. 2011, §5.2) on ``y = s, s ≥ 0`` guesses the active set: its linear solves
    with ``(Q + ρI)⁻¹`` share one eigendecomposition, so an iteration is one small matmul for
    the whole batch. Then, :data:`ACTIVE_SET_STEPS` times, the KKT system is solved exactly on
    the free set (``Q_FF y_F = −c_F``, ``y_A = 0``; a primal–dual active-set step, Hintermüller,
    Ito & Kunisch 2002) and the active set is updated from ``min(y, Qy + c)``. A row is
    ``certified`` when its last solve satisfies the KKT conditions to :data:`KKT_TOLERANCE`
    (``y ≥ 0``, ``Qy + c ≥ 0``; complementarity holds by construction) on a well-conditioned
    free block: it is then the optimum to round-off. The others (rank-deficient free blocks,
    an active set ADMM did not find) are for the interior-point method.
    """
    task = _task_scale(q)
    unit = q / (task[:, None] * task[None, :])
    unit_c = c / task
    rho = 1.0  # the mean eigenvalue of the unit-diagonal Q
    eigenvalues, eigenvectors = torch.linalg.eigh(unit)
    resolvent = (eigenvectors / (eigenvalues.clamp(min=0) + rho)) @ eigenvectors.mT
    s = torch.zeros_like(unit_c)
    u = torch.zeros_like(unit_c)
    for _ in range(ADMM_ITERATIONS):
        y = (rho * (s - u) - unit_c) @ resolvent
        relaxed = 1.6 * y - 0.6 * s
        s = (relaxed + u).clamp(min=0)
        u = u + relaxed - s
    y = s
    multiplier = y @ unit + unit_c
    well_conditioned = torch.ones_like(y[:, 0], dtype=torch.bool)
    for _ in range(ACTIVE_SET_STEPS):
        free = (y >= multiplier).to(y.dtype)
        system = free[:, :, None] * unit * free[:, None, :] + torch.diag_embed(1 - free)
        factor = torch.linalg.cholesky_ex(system).L
        pivots = torch.diagonal(factor, dim1=-2, dim2=-1)
        well_conditioned = pivots.amin(-1) > MIN_PIVOT_RATIO * pivots.amax(-1)
        y = torch.cholesky_solve((-free * unit_c)[..., None], factor)[..., 0]
        multiplier = y @ unit + unit_c
    tolerance = KKT_TOLERANCE * unit_c.abs().amax(-1, keepdim=True)
    certified = (
        well_conditioned
        & torch.isfinite(y).all(-1)
        & (y >= -tolerance).all(-1)
        & (multiplier >= -tolerance).all(-1)
    )
    return y.clamp(min=0) / task, certified


def cagrad_weights(
    q: Tensor,
    radius: Tensor,
    *,
    stages: int = CAGRAD_STAGES,
    steps: int = CAGRAD_STEPS,
    iterations: int = CAGRAD_ITERATIONS,
) -> tuple[Tensor, Tensor]:
    """``(w, ‖g_w‖)``: ``w = argmin_{w ∈ Δ} F(w) = bᵀw + r √(wᵀQw)`` with ``b = Q 1 / T``.

    CAGrad's dual problem in float64 on a normalised ``q`` (:func:`normalize`, plus
    :func:`ridge`); ``r = radius`` is ``c ‖g₀‖`` in the same units, ``(…)``. Two phases:

    1. The norm has a kink where ``g_w = Lᵀw = 0`` (``Q = L Lᵀ``), so the path is first
       followed on the second-order cone program ``min bᵀw + r t  s.t.  1ᵀw = 1, v = Lᵀw,
       w ≥ 0, ‖v‖ ≤ t`` by the barrier method: for ``τ = τ₀ μᵏ`` (``stages`` values),
       ``steps`` Newton steps on ``τ (bᵀw + r t) − Σ log wᵢ − log(t² − ‖v‖²)``. The barrier is
       self-concordant, so Newton's method with the best of a fixed set of step sizes (the
       damped step ``1/(1+λ)`` among them) converges from the strictly feasible start
       ``w = 1/T``; it stops at ``τ = 1e5`` (gap ``(T + 2)/τ``), since beyond ~1e8 the terms
       ``τ (bᵀw + r t)`` and the barrier's gradient cancel to working precision.
    2. From that point of the central path (duals ``zᵢ = 1 / (τ wᵢ)``), the primal–dual
       :func:`_interior_point` on ``bᵀw + r ρ`` with ``ρ = √(wᵀQw + (μ/r)²)`` (``μ`` its
       current complementarity: smooth everywhere, and ``F`` itself as ``μ → 0``; Hessian
       ``(r/ρ)(Q − Qw wᵀQ / ρ²)``) converges to float64 round-off.

    When ``0`` is in the convex hull of the gradients and ``r`` is large enough, the optimum has
    ``g_w = 0`` and CAGrad's direction is not unique; the result is then finite but arbitrary.
    """
    q = ridge(q)
    n = q.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], radius.shape)
    q = q.expand(*batch, n, n)
    b = q.mean(-1)  # J g₀
    r = radius.expand(batch)[..., None]
    lt = torch.linalg.cholesky_ex(q).L.mT  # Lᵀ with L Lᵀ = Q (+ ridge: definite)
    w = torch.full_like(b, 1 / n)
    v = _matvec(lt, w)
    t = (v * v).sum(-1, keepdim=True).sqrt() + 1
    trials = 2.0 ** -torch.arange(12, dtype=b.dtype, device=b.device)
    tau = torch.ones_like(r)
    for stage in range(stages):
        tau = torch.full_like(r, CAGRAD_TAU0 * CAGRAD_GROWTH**stage)
        for _ in range(steps):
            w, t, v = _cagrad_newton(lt, b, r, tau, w, t, v, trials)

    def norm(y: Tensor, smoothing: Tensor | float) -> tuple[Tensor, Tensor]:
        qy = _matvec(q, y)
        return qy, ((y * qy).sum(-1, keepdim=True) + smoothing).clamp(min=1e-300).sqrt()

    def objective(y: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
        # μ is in units of F and ‖g_w‖ in units of F / r: the smoothing is (μ / r)², so that
        # it fades with μ whatever the scale of the optimum (F* ~ 1e-8 when the gradients'
        # norms spread over 1e8, where a smoothing of μ itself hid it).
        qy, rho = norm(y, (mu / r.clamp(min=1e-300)) ** 2)
        outer = qy[..., :, None] * qy[..., None, :] / rho[..., None] ** 2
        return b + r * qy / rho, (q - outer) * (r / rho)[..., None]

    z = 1 / (tau * w)  # the barrier's estimate of the multipliers of w ≥ 0
    nu = ((objective(w, torch.zeros_like(r))[0] - z) * w).sum(-1, keepdim=True)
    w = _interior_point(objective, w, z, torch.ones_like(r), iterations, nu)
    return w, norm(w, 0.0)[1][..., 0]


def _cagrad_barrier(b, r, tau, w, t, v):
    """``τ (bᵀw + r t) − Σ log w − log(t² − ‖v‖²)``, ``inf`` outside the domain."""
    h = t[..., 0] ** 2 - (v * v).sum(-1)
    inside = (w > 0).all(-1) & (t[..., 0] > 0) & (h > 0)
    value = tau * ((b * w).sum(-1) + r[..., 0] * t[..., 0])
    value = value - torch.where(w > 0, w, 1.0).log().sum(-1) - torch.where(h > 0, h, 1.0).log()
    return torch.where(inside, value, torch.inf)


def _cagrad_newton(lt, b, r, tau, w, t, v, trials):
    """One Newton step of :func:`cagrad_weights` with the best trial step size."""
    h = t**2 - (v * v).sum(-1, keepdim=True)
    g_w, g_t, g_v = tau * b - 1 / w, tau * r - 2 * t / h, 2 * v / h  # gradient
    w2 = w * w

    def h_inverse(a_w, a_t, a_v):  # H⁻¹ = diag(w²) ⊕ (x xᵀ − ½ h J), x = (t, v)
        xa = t * a_t + (v * a_v).sum(-1, keepdim=True)
        return w2 * a_w, t * xa - h / 2 * a_t, v * xa + h / 2 * a_v

    # Equality constraints A x = (1, 0): rows 1ᵀw and v − Lᵀw; residual of the current point.
    r_eq = torch.cat([1 - w.sum(-1, keepdim=True), _matvec(lt, w) - v], -1)
    hg_w, hg_t, hg_v = h_inverse(g_w, g_t, g_v)
    a_hg = torch.cat([hg_w.sum(-1, keepdim=True), hg_v - _matvec(lt, hg_w)], -1)
    lw = lt * w2[..., None, :]  # Lᵀ W²
    corner = -lw.sum(-1, keepdim=True)
    schur = torch.cat(
        [
            torch.cat([w2.sum(-1, keepdim=True)[..., None], corner.mT], -1),
            torch.cat(
                [
                    corner,
                    lw @ lt.mT
                    + v[..., :, None] * v[..., None, :]
                    + torch.diag_embed((h / 2).expand_as(v)),
                ],
                -1,
            ),
        ],
        -2,
    )
    chol = torch.linalg.cholesky_ex(schur).L
    lam = torch.cholesky_solve((-a_hg - r_eq)[..., None], chol)[..., 0]
    lam0, lam_v = lam[..., :1], lam[..., 1:]
    # Δx = −H⁻¹(g + Aᵀλ), Aᵀλ = (λ₀ 1 − L λ_v, 0, λ_v).
    d_w, d_t, d_v = h_inverse(g_w + lam0 - _matvec(lt.mT, lam_v), g_t, g_v + lam_v)
    d_w, d_t, d_v = -d_w, -d_t, -d_v
    decrement = ((g_w * d_w).sum(-1) + (g_t * d_t).sum(-1) + (g_v * d_v).sum(-1)).neg()
    damped = 1 / (1 + decrement.clamp(min=0).sqrt())
    steps = torch.cat([trials.expand(*damped.shape, -1), damped[..., None]], -1)  # (…, K)
    s = steps[..., :, None]
    values = _cagrad_barrier(
        b[..., None, :],
        r[..., None, :],
        tau,
        w[..., None, :] + s * d_w[..., None, :],
        t[..., None, :] + s * d_t[..., None, :],
        v[..., None, :] + s * d_v[..., None, :],
    )
    best = torch.gather(steps, -1, values.argmin(-1, keepdim=True))
    finite = torch.isfinite(values.amin(-1, keepdim=True)) & torch.isfinite(best)
    best = torch.where(finite, best, 0.0)
    return w + best * d_w.nan_to_num(), t + best * d_t.nan_to_num(), v + best * d_v.nan_to_num()


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
        chol = torch.linalg.cholesky_ex(q + torch.diag_embed(alpha**-2)).L
        delta = -torch.cholesky_solve(grad[..., None], chol)[..., 0]
        slope = (grad * delta).sum(-1)  # −λ², λ the Newton decrement
        candidates = alpha[..., None, :] + trials[:, None] * delta[..., None, :]
        accept = (
            objective(candidates)
            <= objective(alpha[..., None, :]) + 0.25 * trials * slope[..., None]
        )
        # The largest accepted trial; the damped step 1/(1+λ) is always safe (self-concordance).
        best = torch.where(accept, trials, torch.zeros_like(trials)).amax(-1)
        step = torch.maximum(best, 1 / (1 + (-slope).clamp(min=0).sqrt()))
        alpha = alpha + step[..., None] * delta
    return alpha


def project_weights(gramian: Tensor, lower: Tensor, reg_eps: float | Tensor = 0.0) -> Tensor:
    """``argmin_{v ≥ lower} vᵀGv`` (float64): ``Jᵀv`` is ``Jᵀlower`` projected on the dual cone.

    ``lower`` is ``(…, T)``, one problem per row (Quinton & Rey, 2024, Proposition 1). As in
    torchjd, ``reg_eps`` is added to the diagonal of ``G / tr(G)`` (0 solves the exact problem; a
    tensor, which ``vmap`` may batch, is always added).
    """
    g = gramian.to(torch.float64)
    if isinstance(reg_eps, Tensor) or reg_eps > 0:
        trace = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)
        g = g / torch.where(trace > 0, trace, torch.ones_like(trace))[..., None, None]
        g = g + reg_eps * torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    q, _ = normalize(g)
    lower = lower.to(q)
    return solve_qp(q, torch.zeros_like(lower), lower)
