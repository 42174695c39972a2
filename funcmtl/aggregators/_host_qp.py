"""MGDA's, UPGrad's and DualProj's QPs of eager CPU calls, solved on Python floats.

For a few dozen tasks every torch op costs more than the arithmetic it does (~2.5 µs of
dispatch for a 2 × 2 product), so an eager call that may read values
(:func:`~funcmtl.aggregators._normalize.may_branch`) reads the ``T × T`` Gramian once and
solves in plain float64 arithmetic by the primal active-set method, whose steps cost
``O(T |F|)`` for a free set ``F`` that is small in practice (the tasks in conflict). Its
answer is used only when certified — a well-conditioned free block and the KKT conditions to
:data:`~funcmtl.aggregators._active_set.KKT_TOLERANCE` — and ``None`` sends the call to the
tensor solvers (which also repair a Gramian that round-off made indefinite). One problem
(MGDA, DualProj) up to :data:`HOST_SINGLE_TASKS` tasks, a batch (UPGrad's ``T``) up to
:data:`HOST_TASKS`; beyond, the batched tensor solvers win.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from funcmtl.aggregators._active_set import KKT_TOLERANCE, MIN_PIVOT_RATIO
from funcmtl.aggregators._normalize import RIDGE, may_branch

HOST_TASKS = 12  # T up to which a batch of problems (UPGrad's T) is solved here
HOST_SINGLE_TASKS = 64  # T up to which one problem (MGDA's, DualProj's) is
HOST_FREE_TASKS = 12  # free variables beyond which the tensor solvers take over

Matrix = list[list[float]]


def project(gramian: Tensor, lower: Tensor, *, simplex: bool = False) -> Tensor | None:
    """``argmin vᵀGv  s.t.  v ≥ lower`` [and ``1ᵀv = 1``] for each row of ``lower (B, T)``
    (or ``(T,)``), float64, or ``None`` when the host may not or does not certify it."""
    num_tasks = gramian.shape[-1]
    limit = HOST_TASKS if lower.dim() == 2 else HOST_SINGLE_TASKS
    if gramian.dim() != 2 or num_tasks > limit or not may_branch(gramian, lower):
        return None
    gramian = gramian.to(torch.float64)
    problem = _UnitProblem(gramian.tolist())
    bounds = (lower if lower.dim() == 2 else lower[None]).to(torch.float64)
    products = (bounds @ gramian.mT).tolist()  # G l, one row per problem: one tensor op
    solutions = []
    for bound, product in zip(bounds.tolist(), products, strict=True):
        y = problem.solve(product, 1 - sum(bound) if simplex else None)
        if y is None:
            return None
        solutions.append([yi + li for yi, li in zip(y, bound, strict=True)])
    result = torch.tensor(solutions, dtype=torch.float64)
    return result if lower.dim() == 2 else result[0]


class _UnitProblem:
    """``min ½ vᵀQv  s.t.  v ≥ l`` [and ``1ᵀv = 1``] for one Gramian and many bounds ``l``.

    ``Q`` is ``G / mean diag G``, symmetrised, plus the relative ridge of
    :func:`~funcmtl.aggregators._normalize.ridge`; the problems are solved in the
    coordinates of unit-norm gradients (``y = v − l = u / s``, ``s = √diag Q``, so the
    matrix ``U = Q_ij / (s_i s_j)`` has a unit diagonal). Only the columns of ``U`` that a
    free set touches are formed, once for all the problems.
    """

    def __init__(self, g: Matrix) -> None:
        n = len(g)
        scale = sum(max(g[i][i], 0.0) for i in range(n)) / n
        self.scale = scale if scale > 0 else 1.0
        diagonal = [g[i][i] / self.scale for i in range(n)]
        self.s = [math.sqrt(d * (1 + RIDGE) if d > 0 else RIDGE) for d in diagonal]
        self.g = g
        self.columns: dict[int, list[float]] = {}

    def column(self, j: int) -> list[float]:
        """Column ``j`` of ``U``."""
        found = self.columns.get(j)
        if found is None:
            g, s, divisor = self.g, self.s, 2 * self.scale * self.s[j]
            found = [(g[i][j] + g[j][i]) / (divisor * s[i]) for i in range(len(s))]
            found[j] = 1.0
            self.columns[j] = found
        return found

    def solve(self, product: list[float], total: float | None) -> list[float] | None:
        """``y = v − l ≥ 0`` given ``G l``, or ``None`` if uncertified.

        The primal active-set method (Nocedal & Wright, *Numerical Optimization*, §16.5) on
        ``min ½ uᵀUu + cᵀu  s.t.  u ≥ 0`` [and ``aᵀu = total``, ``a = 1/s``]: from ``u = 0``
        (or, with the sum constraint, the vertex of the shortest gradient), each step solves
        the equality-constrained problem on the free set ``F`` by a Cholesky factorisation of
        ``U_FF`` and moves towards it until a free variable reaches 0 (which leaves ``F``); at
        the minimiser on ``F`` the most negative multiplier ``z_i = (Uu + c − νa)_i`` enters
        ``F``, and when there is none the point is optimal. The solutions are sparse (the
        tasks in conflict), so the steps cost ``O(T |F|)``; the answer is kept only if ``U_FF``
        is well conditioned and the KKT conditions hold to :data:`KKT_TOLERANCE`.
        """
        n, s = len(product), self.s
        u = [0.0] * n
        c = [p / (self.scale * si) for p, si in zip(product, s, strict=True)]  # (Ql)_i / s_i
        a = [1 / si for si in s]
        free: list[int] = []
        if total is not None:  # MGDA's solutions are sparse: from the shortest gradient
            shortest = s.index(min(s))
            u[shortest], free = total * s[shortest], [shortest]
        size = max(max(map(abs, c)), 1.0)
        factor: Matrix | None = []
        nu = 0.0
        for _ in range(3 * n + 10):
            columns = [self.column(j) for j in free]
            factor = _cholesky([[column[i] for column in columns] for i in free])
            if factor is None:
                return None
            target = _cholesky_solve(factor, [-c[i] for i in free])
            if total is not None:  # ν from aᵀu = total, u_F = U_FF⁻¹(−c_F + ν a_F)
                along = _cholesky_solve(factor, [a[i] for i in free])
                weight = sum(a[i] * x for i, x in zip(free, along, strict=True))
                if not weight > 0:
                    return None
                used = sum(a[i] * x for i, x in zip(free, target, strict=True))
                nu = (total - used) / weight
                target = [x + nu * y for x, y in zip(target, along, strict=True)]
            step, blocking = 1.0, None
            for k, i in enumerate(free):
                if target[k] < u[i] and target[k] < 0 and u[i] / (u[i] - target[k]) < step:
                    step, blocking = u[i] / (u[i] - target[k]), k
            for k, i in enumerate(free):
                u[i] += step * (target[k] - u[i])
            if blocking is not None:
                u[free.pop(blocking)] = 0.0
                continue
            z = list(c)
            for j, column in zip(free, columns, strict=True):
                z = [zi + u[j] * uij for zi, uij in zip(z, column, strict=True)]
            outside = [i for i in range(n) if i not in free]
            entering = min(outside, key=lambda i: z[i] - nu * a[i], default=None)
            tolerance = KKT_TOLERANCE * max(size, abs(nu))
            if entering is None or z[entering] - nu * a[entering] >= -tolerance:
                break
            if len(free) == HOST_FREE_TASKS:  # a dense solution: refactoring each step in
                return None  # Python would cost O(|F|³), LAPACK's batched solvers win
            free.append(entering)
        else:
            return None
        pivots = [factor[k][k] for k in range(len(factor))]
        if pivots and min(pivots) <= MIN_PIVOT_RATIO * max(pivots):
            return None
        if not math.isfinite(nu):
            return None
        return [max(ui, 0.0) / si for ui, si in zip(u, s, strict=True)]


def _cholesky(m: Matrix) -> Matrix | None:
    """Lower-triangular ``L`` with ``L Lᵀ = m``, or ``None`` if ``m`` is not definite."""
    n = len(m)
    factor = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            rest = m[i][j] - sum(factor[i][k] * factor[j][k] for k in range(j))
            if i == j:
                if not rest > 0:
                    return None
                factor[i][i] = math.sqrt(rest)
            else:
                factor[i][j] = rest / factor[j][j]
    return factor


def _cholesky_solve(factor: Matrix, b: list[float]) -> list[float]:
    """``x`` with ``L Lᵀ x = b``."""
    n = len(b)
    y = [0.0] * n
    for i in range(n):
        y[i] = (b[i] - sum(factor[i][k] * y[k] for k in range(i))) / factor[i][i]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(factor[k][i] * x[k] for k in range(i + 1, n))) / factor[i][i]
    return x
