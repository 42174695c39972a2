"""CAGrad's dual ``min_{w ∈ Δ} bᵀw + r √(wᵀQw)``: a barrier method on its second-order-cone
form to get near the optimum from anywhere, then the interior-point method on a smoothed
objective to finish exactly (see :func:`cagrad_weights`)."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl.aggregators import _cagrad_active_set as cagrad_active_set
from funcmtl.aggregators import _two_tasks as two_tasks
from funcmtl.aggregators._interior_point import interior_point
from funcmtl.aggregators._normalize import matvec, may_branch, ridge
from funcmtl.aggregators._plain_batch import plain_batch, traced_on_cpu

CAGRAD_STAGES, CAGRAD_STEPS = 6, 4  # barrier stages × Newton steps of cagrad_weights
CAGRAD_TAU0, CAGRAD_GROWTH = 1.0, 10.0  # the barrier parameters τ₀ μᵏ
CAGRAD_ITERATIONS = 20  # then interior-point iterations on CAGrad's smooth dual
MEMBERWISE_TASKS = 16  # under vmap on a CPU, from here each member by the eager path (K=32,
# T=40: 71 -> 51 ms); below, the batched barrier method is cheaper than K active-set paths


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
       :func:`interior_point` on ``bᵀw + r ρ`` with ``ρ = √(wᵀQw + (μ/r)²)`` (``μ`` its
       current complementarity: smooth everywhere, and ``F`` itself as ``μ → 0``; Hessian
       ``(r/ρ)(Q − Qw wᵀQ / ρ²)``) converges to float64 round-off.

    When ``0`` is in the convex hull of the gradients and ``r`` is large enough, the optimum has
    ``g_w = 0`` and CAGrad's direction is not unique; the result is then finite but arbitrary.

    Two tasks have a closed form (:func:`funcmtl.aggregators._two_tasks.cagrad_dual`). Eager
    CPU calls on one problem first try the exact active-set solve of
    :mod:`funcmtl.aggregators._cagrad_active_set` and keep its answer when it is certified;
    under ``vmap`` on a CPU, from :data:`MEMBERWISE_TASKS` tasks, so does every member.
    """
    q = ridge(q)
    n = q.shape[-1]
    if n == 2:
        return two_tasks.cagrad_dual(q, radius)
    if n >= MEMBERWISE_TASKS and traced_on_cpu(q, radius):
        packed = _memberwise(q, radius, stages, steps, iterations)
        return packed[..., :-1], packed[..., -1]
    return _solve(q, radius, stages, steps, iterations)


def _each_member(q: Tensor, radius: Tensor, stages: int, steps: int, iterations: int) -> Tensor:
    """``[w, ‖g_w‖]`` for every member of a plain batch (``q (K, n, n)`` ridged, ``radius
    (K,)``), each by the eager path (the certified active set first)."""
    rows = []
    for qk, rk in zip(q, radius.expand(q.shape[:-2]), strict=True):
        w, norm = _solve(qk, rk, stages, steps, iterations)
        rows.append(torch.cat([w, norm[None]]))
    return torch.stack(rows)


_memberwise = plain_batch(_each_member)


def _solve(q: Tensor, radius: Tensor, stages: int, steps: int, iterations: int):
    n = q.shape[-1]
    if may_branch(q, radius) and q.dim() == 2 and radius.dim() == 0 and float(radius) > 0:
        w = cagrad_active_set.solve(q, q.mean(-1), float(radius))  # exact; None: uncertified
        if w is not None:
            return w, (w @ q @ w).clamp(min=0).sqrt()
    batch = torch.broadcast_shapes(q.shape[:-2], radius.shape)
    q = q.expand(*batch, n, n)
    b = q.mean(-1)  # J g₀
    r = radius.expand(batch)[..., None]
    lt = torch.linalg.cholesky_ex(q).L.mT  # Lᵀ with L Lᵀ = Q (+ ridge: definite)
    w = torch.full_like(b, 1 / n)
    v = matvec(lt, w)
    t = (v * v).sum(-1, keepdim=True).sqrt() + 1
    trials = 2.0 ** -torch.arange(12, dtype=b.dtype, device=b.device)
    tau = torch.ones_like(r)
    for stage in range(stages):
        tau = torch.full_like(r, CAGRAD_TAU0 * CAGRAD_GROWTH**stage)
        for _ in range(steps):
            w, t, v = _cagrad_newton(lt, b, r, tau, w, t, v, trials)

    def norm(y: Tensor, smoothing: Tensor | float) -> tuple[Tensor, Tensor]:
        qy = matvec(q, y)
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
    w = interior_point(objective, w, z, torch.ones_like(r), iterations, nu)
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
    r_eq = torch.cat([1 - w.sum(-1, keepdim=True), matvec(lt, w) - v], -1)
    hg_w, hg_t, hg_v = h_inverse(g_w, g_t, g_v)
    a_hg = torch.cat([hg_w.sum(-1, keepdim=True), hg_v - matvec(lt, hg_w)], -1)
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
    d_w, d_t, d_v = h_inverse(g_w + lam0 - matvec(lt.mT, lam_v), g_t, g_v + lam_v)
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
