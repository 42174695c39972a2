"""Nash-MTL's bargaining point: the solution of ``Qα = 1/α, α > 0``, the minimiser of the
strictly convex ``½ αᵀQα − Σ log αᵢ``, by Newton's method with a vectorised line search."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl.aggregators import _two_tasks as two_tasks
from funcmtl.aggregators._normalize import matvec, may_branch, ridge, task_scale
from funcmtl.aggregators._plain_batch import plain_batch

NEWTON_ITERATIONS = 30  # Newton steps of nash_point (converged after ~20 in the tests)
CONVERGED = 1e-28  # λ², the squared Newton decrement, at which an eager call stops


def nash_point(q: Tensor, *, iterations: int = NEWTON_ITERATIONS) -> Tensor:
    """The ``α > 0`` with ``(Q + ridge) α = 1/α``, float64, for a normalised PSD ``q``
    ``(…, n, n)``; under ``vmap`` on a CPU the members are one plain batch, which stops once
    all have converged (:mod:`funcmtl.aggregators._plain_batch`); two tasks in closed form."""
    if q.shape[-1] == 2:
        return two_tasks.nash_point(ridge(q))
    return _batched(q, iterations)


def _newton(q: Tensor, iterations: int) -> Tensor:
    q = ridge(q)
    n = q.shape[-1]
    # Start on the ray α = t / √diag(Q) at its best t (f = ½ t² ρ − n log t + const), so that
    # the iterates do not depend on the tasks' scales.
    ray = 1 / task_scale(q)
    alpha = ray * (n / (ray * matvec(q, ray)).sum(-1, keepdim=True)).sqrt()
    trials = 0.5 ** torch.arange(12, dtype=q.dtype, device=q.device)  # line-search steps

    def objective(x: Tensor) -> Tensor:
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        value = (x * matvec(q[..., None, :, :], x)).sum(-1) / 2 - safe.log().sum(-1)
        return torch.where(positive.all(-1), value, torch.inf)

    eager = may_branch(q)  # may stop once converged (fixed counts under vmap / on CUDA)
    for _ in range(iterations):
        grad = matvec(q, alpha) - 1 / alpha
        chol = torch.linalg.cholesky_ex(q + torch.diag_embed(alpha**-2)).L
        delta = -torch.cholesky_solve(grad[..., None], chol)[..., 0]
        slope = (grad * delta).sum(-1)  # −λ², λ the Newton decrement
        if eager and float((-slope).max()) < CONVERGED:
            break  # the remaining steps would move α by round-off only
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


_batched = plain_batch(_newton)
