"""Small QPs of eager CPU calls solved on Python floats: MGDA's, UPGrad's and DualProj's.

For a handful of tasks every torch op costs more than the arithmetic it does (~2.5 µs of
dispatch for a 2 × 2 product), so an eager call that is allowed to read values
(:func:`~funcmtl.aggregators._normalize.may_branch`) reads the ``T × T`` Gramian once and runs
the primal–dual active-set method of :mod:`._active_set` (Hintermüller, Ito & Kunisch 2002)
in plain float64 arithmetic: a Cholesky factorisation of the free block per step, until the
free set repeats. Its answer is used only with the same certificate — a well-conditioned free
block and the KKT conditions to :data:`~funcmtl.aggregators._active_set.KKT_TOLERANCE` —
and ``None`` sends the call to the tensor solvers (which also repair a Gramian that round-off
made indefinite). Up to :data:`HOST_TASKS` tasks; beyond, LAPACK's ``O(T³)`` kernels win.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from funcmtl.aggregators._active_set import KKT_TOLERANCE, MIN_PIVOT_RATIO
from funcmtl.aggregators._normalize import RIDGE, may_branch

HOST_TASKS = 12  # T above which the tensor solvers are faster than Python arithmetic

Matrix = list[list[float]]


def project(gramian: Tensor, lower: Tensor, *, simplex: bool = False) -> Tensor | None:
    """``argmin vᵀGv  s.t.  v ≥ lower`` [and ``1ᵀv = 1``] for each row of ``lower (B, T)``
    (or ``(T,)``), float64, or ``None`` when the host may not or does not certify it."""
    num_tasks = gramian.shape[-1]
    if gramian.dim() != 2 or num_tasks > HOST_TASKS or not may_branch(gramian, lower):
        return None
    problem = _UnitProblem(gramian.tolist())
    rows = lower.tolist()
    solutions = []
    for bound in rows if lower.dim() == 2 else [rows]:
        y = problem.solve(bound, 1 - sum(bound) if simplex else None)
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
    matrix is ``Q_ij / (s_i s_j)`` with a unit diagonal), and the Cholesky factors of the
    free blocks are shared by the problems.
    """

    def __init__(self, g: Matrix) -> None:
        n = len(g)
        scale = sum(max(g[i][i], 0.0) for i in range(n)) / n
        scale = scale if scale > 0 else 1.0
        diagonal = [g[i][i] / scale for i in range(n)]
        self.s = [math.sqrt(d * (1 + RIDGE) if d > 0 else RIDGE) for d in diagonal]
        self.unit = [
            [1.0 if i == j else (g[i][j] + g[j][i]) / (2 * scale * self.s[i] * self.s[j])
             for j in range(n)]
            for i in range(n)
        ]
        self.factors: dict[tuple[int, ...], Matrix | None] = {}

    def factor(self, index: tuple[int, ...]) -> Matrix | None:
        if index not in self.factors:
            self.factors[index] = _cholesky([[self.unit[i][j] for j in index] for i in index])
        return self.factors[index]

    def solve(self, bound: list[float], total: float | None) -> list[float] | None:
        """``y = v − l ≥ 0``, or ``None`` if uncertified: the steps of :func:`funcmtl.
        aggregators._active_set.solve_batch`, from ``F = {i : (Ql)_i < 0}`` (the tasks ``l``
        conflicts with; ``y = 0`` is optimal when there are none) or, with the sum
        constraint, from the vertex of the shortest gradient."""
        n, s, unit = len(bound), self.s, self.unit
        scaled = [(j, s[j] * bound[j]) for j in range(n) if bound[j]]  # (Ql)_i / s_i
        unit_c = [sum(unit[i][j] * x for j, x in scaled) for i in range(n)]
        a = [1 / si for si in s]
        if total is None:
            free = [ci < 0 for ci in unit_c]
        else:  # MGDA's solutions are sparse: from the vertex of the shortest gradient
            shortest = s.index(min(s))
            free = [i == shortest for i in range(n)]
        for _ in range(n + 2):
            index = tuple(i for i in range(n) if free[i])
            factor = self.factor(index)
            if factor is None:
                return None
            solution = _cholesky_solve(factor, [-unit_c[i] for i in index])
            nu = 0.0
            if total is not None:  # ν from aᵀu = total, u_F = Q_FF⁻¹(−c_F + ν a_F)
                along = _cholesky_solve(factor, [a[i] for i in index])
                weight = sum(a[i] * x for i, x in zip(index, along, strict=True))
                if not weight > 0:
                    return None
                used = sum(a[i] * x for i, x in zip(index, solution, strict=True))
                nu = (total - used) / weight
                solution = [x + nu * y for x, y in zip(solution, along, strict=True)]
            u = [0.0] * n
            for i, x in zip(index, solution, strict=True):
                u[i] = x
            z = [
                0.0 if free[i] else sum(unit[i][j] * u[j] for j in index) + unit_c[i] - nu * a[i]
                for i in range(n)
            ]
            moved = [u[i] > 0 or z[i] < 0 for i in range(n)]
            if moved == free:
                break
            free = moved
        else:
            return None
        pivots = [factor[i][i] for i in range(len(factor))]
        if pivots and min(pivots) <= MIN_PIVOT_RATIO * max(pivots):
            return None
        tolerance = KKT_TOLERANCE * max(max(map(abs, unit_c), default=0.0), abs(nu), 1.0)
        if min(u) < -tolerance or min(z) < -tolerance or not math.isfinite(nu):
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
