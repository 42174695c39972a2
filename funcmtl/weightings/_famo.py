"""FAMO (Liu et al.): learn task logits from the loss decrease between consecutive steps."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import (
    Weighting,
    check_init,
    check_losses,
    check_non_negative,
    check_positive,
    zero_count,
)

# The official code's constant inside log(ℓ − ℓ_min + ε), with ℓ_min = 0.
_LOSS_EPS = 1e-8
# torch.optim.Adam's defaults, which the official code uses.
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


class FamoState(NamedTuple):
    logits: Tensor  # shape=(T,): ξ, the task weighting is z = softmax(ξ)
    prev_losses: Tensor  # shape=(T,): the losses of the previous call, ℓ_{t−1}
    count: Tensor  # shape=(), int64: calls so far (the logits have had count − 1 updates)
    adam_m: Tensor  # shape=(T,): Adam's first moment of the logits (zeros for "sgd")
    adam_v: Tensor  # shape=(T,): Adam's second moment of the logits (zeros for "sgd")


@named
def famo(
    lr: float | Tensor = 0.025,
    gamma: float | Tensor = 1e-3,
    optimizer: Literal["adam", "sgd"] = "adam",
) -> Weighting:
    """FAMO: task logits ``ξ`` learnt so that all log-losses decrease at an equal rate.

    With ``z = softmax(ξ)`` the model descends ``Σᵢ zᵢ log ℓᵢ / c`` with ``c = Σᵢ zᵢ/ℓᵢ`` held
    constant, so the weights it sees are

    .. math::

        wᵢ = \\frac{zᵢ / ℓᵢ}{Σⱼ zⱼ / ℓⱼ}  \\quad(\\text{they sum to } 1),

    and the logits take a step on the observed decrease of the log-losses (the paper's
    Algorithm 1):

    .. math::

        δ = J_{\\mathrm{softmax}}(ξ)ᵀ\\,(\\log ℓ_{t} − \\log ℓ_{t+1}), \\qquad
        ξ ← ξ − β\\,(δ + γ ξ).

    ``optimizer="sgd"`` is Algorithm 1 literally (``β = lr``). ``optimizer="adam"`` (default)
    is the practical variant the paper gives in its appendix and that the official code and
    LibMTL run: ``torch.optim.Adam(lr, weight_decay=γ)`` fed the gradient ``δ``. Adam's step
    does not shrink with ``δ`` — the size of one step's log-loss change, usually small — so
    it moves the logits at a useful rate at ``lr = 0.025``; plain SGD needs a far larger
    ``lr``. The losses must be positive (``log(ℓ + 1e-8)`` is taken, as in the official code,
    with its lower bound ``ℓ_min = 0``).

    **Timing.** The official code, after the model step on batch ``bₜ``, recomputes the loss
    on the *same* batch, ``ℓ(θ_{t+1}; bₜ)``, and updates ``ξ`` with it (one extra forward).
    This implementation sees only the losses given to each call, so it uses the *next call's*
    losses: at call ``t+1`` it first updates ``ξ`` with ``log ℓ(θₜ; bₜ) − log ℓ(θ_{t+1};
    b_{t+1})``, then returns weights from the new ``ξ`` — the same order of updates, no extra
    forward, identical for full-batch training; with mini-batches ``δ`` also carries the
    batch-to-batch variation of the losses. The first call has no previous losses: it makes
    no logit update, and its weights are ``wᵢ ∝ 1/ℓᵢ`` (``z`` uniform).

    Args:
        lr: learning rate ``β`` of the logits (positive number or 0-dim tensor).
        gamma: the logits' decay ``γ`` (Adam's ``weight_decay``), ≥ 0. 1e-3 as in LibMTL; the
            official scripts use 1e-3 or 1e-2 depending on the benchmark.
        optimizer: ``"adam"`` (the official code) or ``"sgd"`` (the paper's Algorithm 1).

    Returns:
        A :class:`Weighting` whose state is :class:`FamoState`.

    Example:
        >>> wt = fm.weightings.famo(lr=0.025, gamma=0.01)
        >>> state = wt.init(3)
        >>> w, state = wt.weights(torch.tensor([0.5, 1.0, 2.0]), state)   # losses > 0
        >>> w  # sums to 1
        tensor([0.5714, 0.2857, 0.1429])

    References:
        Liu, Feng, Stone & Liu, `FAMO: Fast Adaptive Multitask Optimization
        <https://arxiv.org/abs/2306.03792>`_, 2023 (NeurIPS; official code
        https://github.com/Cranial-XIX/FAMO).
    """
    check_positive("lr", lr)
    check_non_negative("gamma", gamma)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"`optimizer` must be 'adam' or 'sgd'; got {optimizer!r}.")

    def init(num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None):
        check_init(num_tasks, dtype)
        zeros = torch.zeros(num_tasks, dtype=dtype, device=device)
        ones = torch.ones(num_tasks, dtype=dtype, device=device)
        return FamoState(zeros, ones, zero_count(device), zeros.clone(), zeros.clone())

    def weights(
        losses: Tensor,
        state: FamoState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, FamoState]:
        del key, grad_norms
        xi = state.logits
        check_losses(losses, "famo", xi.shape[0])
        x = losses.detach().to(xi.dtype)

        # δ = J_softmax(ξ)ᵀ (log ℓ_{t−1} − log ℓ_t) = z ⊙ (Δ − zᵀΔ)
        z = torch.softmax(xi, dim=0)
        log_decrease = torch.log(state.prev_losses + _LOSS_EPS) - torch.log(x + _LOSS_EPS)
        delta = z * (log_decrease - torch.dot(z, log_decrease))
        grad = delta + gamma * xi
        m, v = state.adam_m, state.adam_v
        if optimizer == "sgd":
            stepped = xi - lr * grad
        else:  # torch.optim.Adam with weight_decay=γ, step number = count
            step = torch.clamp_min(state.count, 1).to(xi.dtype)
            m = _BETA1 * m + (1 - _BETA1) * grad
            v = _BETA2 * v + (1 - _BETA2) * grad * grad
            bias1, bias2 = 1 - _BETA1**step, 1 - _BETA2**step
            stepped = xi - (lr / bias1) * m / (torch.sqrt(v) / torch.sqrt(bias2) + _ADAM_EPS)
        # The first call has no previous losses: no logit update.
        has_prev = state.count > 0
        xi = torch.where(has_prev, stepped, xi)
        m = torch.where(has_prev, m, state.adam_m)
        v = torch.where(has_prev, v, state.adam_v)

        # wᵢ = zᵢ / (c ℓᵢ) with c = Σ zⱼ/ℓⱼ: the gradient of Σ zᵢ log ℓᵢ / c at fixed c.
        z = torch.softmax(xi, dim=0)
        scaled = z / (x + _LOSS_EPS)
        w = scaled / scaled.sum()
        return w.to(losses.dtype), FamoState(xi, x, state.count + 1, m, v)

    return Weighting(init, weights)
