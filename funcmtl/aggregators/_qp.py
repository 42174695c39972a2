"""Box-constrained quadratic programs on a Gramian: MGDA's, UPGrad's and DualProj's.

:func:`solve_qp` — ``min ½ xᵀQx + cᵀx  s.t.  x ≥ lower  [and 1ᵀx = 1]``: the primal–dual
interior-point method (:mod:`._interior_point`). A batch of bound-only problems on one shared
Gramian (UPGrad's ``T`` projections) is first tried by the much cheaper
:func:`_shared_bound_qp` (ADMM with one eigendecomposition, then an exact active-set solve
whose KKT conditions are checked); only the problems it does not certify go to the
interior-point method. Picking those problems out is a host-side branch, taken only in eager
CPU code; under ``vmap`` (or on CUDA) every problem goes through both solvers and the
certificate selects, so that the results agree with the eager ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl.aggregators import _active_set as active_set
from funcmtl.aggregators import _host_qp as host_qp
from funcmtl.aggregators import _two_tasks as two_tasks
from funcmtl.aggregators._interior_point import interior_point
from funcmtl.aggregators._normalize import matvec, may_branch, normalize, ridge, task_scale
from funcmtl.aggregators._plain_batch import plain_batch, traced_on_cpu

QP_ITERATIONS = 20  # interior-point iterations of solve_qp (converged after ~16 in the tests)
ADMM_ITERATIONS = 30  # of _shared_bound_qp, enough to find the active set of full-rank problems
ACTIVE_SET_STEPS = 2  # exact solves on the active set guessed by ADMM, then by the last solve
KKT_TOLERANCE = 1e-10  # of _shared_bound_qp's certificate, relative to the problem's size
MIN_PIVOT_RATIO = 1e-5  # smaller Cholesky pivots (condition ≳ 1e10): left to the IPM
COLD_START_TASKS = 16  # eager, up to this T the steps start from the conflicts (no ADMM):
# 1.5 -> 0.7 ms for UPGrad at T = 8, but at T = 40 the extra (T, T, T) solves cost more


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
    Gramian serves a batch of problems. Solved on ``y = x − lower ≥ 0`` by active-set methods
    with a KKT certificate (:func:`_shared_bound_qp` for bound-only problems on one ``(n, n)``
    ``q``, :mod:`._active_set` otherwise) where values may be read — eager CPU calls, and the
    members' plain batch under ``vmap`` on a CPU (:mod:`._plain_batch`) — and by
    :func:`interior_point` for what they do not certify (for everything elsewhere). Two
    unknowns have closed forms (:mod:`._two_tasks`).
    """
    q = ridge(q)
    batch = torch.broadcast_shapes(q.shape[:-2], linear.shape[:-1], lower.shape[:-1])
    n = q.shape[-1]
    lower = lower.expand(*batch, n)
    c = linear.expand(*batch, n) + matvec(q, lower)  # the linear term in y
    if n == 2:  # closed forms (branch-free)
        if simplex:
            return two_tasks.simplex_qp(q, c, 1 - lower.sum(-1)) + lower
        return two_tasks.bound_qp(q, c) + lower
    if not simplex and q.dim() == 2 and batch:  # a batch of problems on one Gramian
        return _shared_rows(q, c.reshape(-1, n), iterations).reshape(*batch, n) + lower
    readable = may_branch(q, c) or traced_on_cpu(q, c)  # eager, or vmap's plain-batch rule
    if readable and not simplex and q.dim() == 2 and n <= COLD_START_TASKS:
        return _shared_rows(q, c[None], iterations)[0] + lower  # one problem: one row
    bounds = lower if simplex else None
    if readable:  # active sets, the interior-point method for the uncertified problems
        return _eager_batch(q.expand(*batch, n, n), c, bounds, iterations) + lower
    return _bounded_interior_point(q.expand(*batch, n, n), c, bounds, iterations) + lower


def _solve_shared(q: Tensor, rows: Tensor, iterations: int) -> Tensor:
    """``y (…, B, n)`` for the bound-only problems ``rows (…, B, n)`` on ``q (…, n, n)``: the
    active-set solver, and the interior-point method for the rows it does not certify — only
    those where a host-side branch is free (eager CPU), else every row through both."""
    y, certified = _shared_bound_qp(q, rows)
    full = q[..., None, :, :].expand(*rows.shape, rows.shape[-1])
    if may_branch(q, rows):
        if not bool(certified.all()):
            rest = ~certified
            y[rest] = _bounded_interior_point(full[rest], rows[rest], None, iterations)
        return y
    fallback = _bounded_interior_point(full, rows, None, iterations)
    return torch.where(certified[..., None], y, fallback)


_shared_rows = plain_batch(_solve_shared)  # under vmap on a CPU: all members in one batch


def _eager(q: Tensor, c: Tensor, lower: Tensor | None, iterations: int) -> Tensor:
    """Every problem by the active-set method, and by the interior-point method those whose
    answer it does not certify (it branches on values: eager CPU, or the plain batch of
    :data:`_eager_batch` under ``vmap``)."""
    n = c.shape[-1]
    qs, cs = q.expand(*c.shape, n).reshape(-1, n, n), c.reshape(-1, n)
    lowers = None if lower is None else lower.expand_as(c).reshape(-1, n)
    totals = None if lowers is None else 1 - lowers.sum(-1)
    y, certified = active_set.solve_batch(qs, cs, totals)
    if not bool(certified.all()):
        rest = ~certified
        y[rest] = _bounded_interior_point(
            qs[rest], cs[rest], None if lowers is None else lowers[rest], iterations
        )
    return y.reshape(c.shape)


_eager_batch = plain_batch(_eager)  # under vmap on a CPU: all members in one batch


def _bounded_interior_point(q: Tensor, c: Tensor, lower: Tensor | None, iterations: int):
    """``argmin ½ yᵀQy + cᵀy  s.t.  y ≥ 0`` [and ``1ᵀy = 1 − 1ᵀlower`` when ``lower`` is
    given: the simplex case] by :func:`interior_point`; ``q`` ridged, broadcast against ``c``."""
    q = q.expand(*c.shape, c.shape[-1])
    total = None
    if lower is not None:
        total = 1 - lower.sum(-1, keepdim=True)
        y = torch.ones_like(c) * total.clamp(min=1e-3) / c.shape[-1]
        z = torch.ones_like(c)
    else:
        # Scaled per task and per problem (c ↦ ρc scales the solution by ρ): the iterates are
        # those of unit-norm gradients and a unit linear term.
        task = task_scale(q)
        size = (c / task).abs().amax(-1)
        size = torch.where(size > 0, size, torch.ones_like(size))[..., None]
        y, z = size / task, size * task

    def objective(y: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
        del mu
        return matvec(q, y) + c, q

    return interior_point(objective, y, z, total, iterations)


def _shared_bound_qp(q: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(y, certified)`` for ``argmin ½ yᵀQy + cᵀy  s.t.  y ≥ 0``, one problem per row of
    ``c (…, B, n)``, the rows of each batch on one ridged ``q (…, n, n)``.

    In the coordinates of unit-norm gradients (``Q`` with unit diagonal), over-relaxed ADMM
    (Boyd et al. 2011, §5.2) on ``y = s, s ≥ 0`` guesses the active set: its linear solves
    with ``(Q + ρI)⁻¹`` share one eigendecomposition, so an iteration is one small matmul for
    the whole batch. Then, :data:`ACTIVE_SET_STEPS` times, the KKT system is solved exactly on
    the free set (``Q_FF y_F = −c_F``, ``y_A = 0``; a primal–dual active-set step, Hintermüller,
    Ito & Kunisch 2002) and the active set is updated from ``min(y, Qy + c)``. Eager CPU calls
    repeat the exact steps until the sets stop changing, and up to :data:`COLD_START_TASKS`
    tasks skip ADMM (they start from the conflicting tasks, ``c < 0``). A row is
    ``certified`` when its last solve satisfies the KKT conditions to :data:`KKT_TOLERANCE`
    (``y ≥ 0``, ``Qy + c ≥ 0``; complementarity holds by construction) on a well-conditioned
    free block: it is then the
    optimum to round-off. The others (rank-deficient free blocks, an active set the steps did
    not find) are for the interior-point method.
    """
    task = task_scale(q)  # (…, n)
    unit = q / (task[..., :, None] * task[..., None, :])
    unit_c = c / task[..., None, :]
    eager = may_branch(q, c)
    if eager and unit.shape[-1] <= COLD_START_TASKS:  # from the conflicts (c < 0), then steps
        y, multiplier = torch.zeros_like(unit_c), unit_c  # to a fixed point
    else:  # ADMM's guess, then ACTIVE_SET_STEPS exact steps (eager: to a fixed point)
        rho = 1.0  # the mean eigenvalue of the unit-diagonal Q
        eigenvalues, eigenvectors = torch.linalg.eigh(unit)
        spectrum = (eigenvalues.clamp(min=0) + rho)[..., None, :]
        resolvent = (eigenvectors / spectrum) @ eigenvectors.mT
        s = torch.zeros_like(unit_c)
        u = torch.zeros_like(unit_c)
        for _ in range(ADMM_ITERATIONS):
            y = (rho * (s - u) - unit_c) @ resolvent
            relaxed = 1.6 * y - 0.6 * s
            s = (relaxed + u).clamp(min=0)
            u = u + relaxed - s
        y = s
        multiplier = y @ unit + unit_c
    well_conditioned = torch.ones_like(y[..., 0], dtype=torch.bool)
    previous = None
    for _ in range(unit.shape[-1] + 2 if eager else ACTIVE_SET_STEPS):
        free = (y >= multiplier).to(y.dtype)
        if eager:
            if previous is not None and torch.equal(free, previous):
                break
            previous = free
        system = free[..., :, None] * unit[..., None, :, :] * free[..., None, :] + torch.diag_embed(
            1 - free
        )
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
    return y.clamp(min=0) / task[..., None, :], certified


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
    return solve_on_gramian(g, lower.to(g))


def solve_on_gramian(gramian: Tensor, lower: Tensor, *, simplex: bool = False) -> Tensor:
    """``argmin_{v ≥ lower} vᵀGv`` [and ``1ᵀv = 1``] for a float64 Gramian ``(…, T, T)``,
    ``lower (…, [B,] T)``.

    Eager CPU calls up to :mod:`._host_qp`'s task counts: on Python floats. Under ``vmap`` on
    a CPU: the members' plain batch (the rule of :mod:`._plain_batch`) by the active sets,
    without the PSD repair. What these do not certify, and everything else (accelerators,
    ``torch.compile``, two tasks' closed forms): :func:`normalize` and :func:`solve_qp`.
    """
    n = gramian.shape[-1]
    single = lower.dim() == 1
    if gramian.dim() == 2 and n <= (
        host_qp.HOST_SINGLE_TASKS if single else host_qp.HOST_TASKS
    ) and may_branch(gramian, lower):
        return _host_each(gramian, lower, simplex)
    if n > 2 and traced_on_cpu(gramian, lower):  # (two tasks: the closed forms of solve_qp)
        return _without_repair(gramian, lower, simplex)
    return _tensor_solve(gramian, lower, simplex)


def _tensor_solve(gramian: Tensor, lower: Tensor, simplex: bool) -> Tensor:
    q, _ = normalize(gramian)
    return solve_qp(q, torch.zeros_like(lower), lower, simplex=simplex)


def solve_members(gramian: Tensor, lower: Tensor, *, simplex: bool = False) -> Tensor:
    """:func:`solve_on_gramian` for a plain batch of members' Gramians ``(K, T, T)`` and
    bounds ``(K, [B,] T)`` (the weightings' ``batched`` form, :mod:`._member_batch`)."""
    if gramian.shape[-1] > 2:
        return _members_without_repair(gramian, lower, simplex)
    q, _ = normalize(gramian)  # two tasks: the closed forms, rows of bounds on each member
    q = q[:, None] if lower.dim() == gramian.dim() else q
    return solve_qp(q, torch.zeros_like(lower), lower, simplex=simplex)


def _host_each(gramian: Tensor, lower: Tensor, simplex: bool) -> Tensor:
    """One problem on the host, or by the tensor solvers when the host does not certify it."""
    found = host_qp.project(gramian, lower, simplex=simplex)
    return found if found is not None else _tensor_solve(gramian, lower, simplex)


def _members_without_repair(gramian: Tensor, lower: Tensor, simplex: bool) -> Tensor:
    """The members' plain batch ``(K, T, T)``, ``lower (K, [B,] T)``: the active sets on
    ``G / mean diag G`` plus the ridge, without :func:`normalize`'s eigendecompositions (a
    batched ``eigh`` is ~0.2 ms for K=32, T=8); the members they do not certify (which may
    need the PSD repair) go through :func:`_tensor_solve`. Several leading batch dimensions
    (nested ``vmap``) are flattened into one."""
    if gramian.dim() > 3:
        members = gramian.shape[:-2]
        flat = _members_without_repair(
            gramian.reshape(-1, *gramian.shape[-2:]),
            lower.reshape(-1, *lower.shape[len(members):]), simplex)
        return flat.reshape(*members, *flat.shape[1:])
    g = (gramian + gramian.mT) / 2
    diag = torch.diagonal(g, dim1=-2, dim2=-1).clamp(min=0)
    scale = diag.mean(-1)
    q = ridge(g / torch.where(scale > 0, scale, torch.ones_like(scale))[..., None, None])
    if lower.dim() == gramian.dim():  # rows of bounds per member (UPGrad)
        y, certified = _shared_bound_qp(q, lower @ q)
        certified = certified.all(-1)
    else:
        totals = 1 - lower.sum(-1) if simplex else None
        y, certified = active_set.solve_batch(q, matvec(q, lower), totals)
    v = y + lower
    if not bool(certified.all()):
        rest = ~certified
        v[rest] = torch.stack([_tensor_solve(g, b, simplex)
                               for g, b in zip(gramian[rest], lower[rest], strict=True)])
    return v


_without_repair = plain_batch(_members_without_repair)
