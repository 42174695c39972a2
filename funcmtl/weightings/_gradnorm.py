"""GradNorm (Chen et al.): learn weights that equalise the task gradient norms' training rates."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import (
    Weighting,
    check_init,
    check_losses,
    check_non_negative,
    check_positive,
    require_grad_norms,
    zero_count,
)

# A floor under the updated weights before renormalising: a step that would push a weight to
# zero or below (a large lr) must not flip the sign of that task's gradient.
_MIN_WEIGHT = 1e-6


class GradNormState(NamedTuple):
    weights: Tensor  # shape=(T,): wᵢ(t), summing to T
    initial_losses: Tensor  # shape=(T,): Lᵢ(0), the losses of the first call
    count: Tensor  # shape=(), int64: calls so far


@named
def gradnorm(alpha: float | Tensor = 1.5, lr: float | Tensor = 0.025) -> Weighting:
    """GradNorm: learnable weights whose weighted gradient norms track each task's training rate.

    With ``gᵢ = ‖∇_W Lᵢ‖`` (``grad_norms``, of the *unweighted* losses; ``W`` the shared
    parameters the train step chooses — the paper uses the last shared layer), GradNorm
    makes the weighted norms ``G⁽ⁱ⁾ = wᵢ gᵢ`` follow the tasks' relative inverse training
    rates:

    .. math::

        \\tilde Lᵢ = \\frac{Lᵢ(t)}{Lᵢ(0)}, \\quad rᵢ = \\frac{\\tilde Lᵢ}{\\operatorname{mean}_j
        \\tilde L_j}, \\quad \\bar G = \\operatorname{mean}_j w_j g_j, \\quad
        L_{grad} = Σᵢ \\bigl| wᵢ gᵢ − \\bar G · rᵢ^{α} \\bigr|.

    The target ``Ḡ rᵢ^α`` is held constant, so ``∂L_grad/∂wᵢ = sign(wᵢgᵢ − Ḡrᵢ^α) · gᵢ``. Each
    call returns the current weights ``w(t)`` (the model's gradient is ``Σ wᵢ(t) ∇Lᵢ``), then
    takes one SGD step ``w ← w − lr · ∂L_grad/∂w`` and renormalises so ``Σᵢ wᵢ = T``, as the
    paper's algorithm does after every step. Since ``w`` and the model both take their gradient
    at the same point, this equals training ``w`` jointly with the model by SGD at rate ``lr``
    (plus the renormalisation). Weights start at 1; ``Lᵢ(0)`` are the losses of the first
    call, kept in the state. Not in the paper: updated weights are floored at 1e-6 before
    renormalising so that a too-large step cannot flip a task's gradient.

    Args:
        alpha: the restoring-force strength ``α``: larger pulls lagging tasks back harder; 0
            asks for equal weighted gradient norms.
        lr: learning rate of the weights (positive number or 0-dim tensor).

    Returns:
        A :class:`Weighting` whose state is :class:`GradNormState`; ``weights`` needs
        ``grad_norms``.

    Example:
        >>> wt = fm.weightings.gradnorm(alpha=1.5, lr=0.025)
        >>> state = wt.init(3)
        >>> norms = torch.tensor([1.0, 2.0, 4.0])   # one gradient norm per task
        >>> w, state = wt.weights(torch.ones(3), state, grad_norms=norms)
        >>> w, state.weights  # the weights for the next step; they sum to 3
        (tensor([1., 1., 1.]), tensor([1.0336, 1.0588, 0.9076]))

    References:
        Chen, Badrinarayanan, Lee & Rabinovich, `GradNorm: Gradient Normalization for
        Adaptive Loss Balancing in Deep Multitask Networks
        <https://proceedings.mlr.press/v80/chen18a.html>`_, 2018.
    """
    check_non_negative("alpha", alpha)
    check_positive("lr", lr)

    def init(num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None):
        check_init(num_tasks, dtype)
        return GradNormState(
            torch.ones(num_tasks, dtype=dtype, device=device),
            torch.ones(num_tasks, dtype=dtype, device=device),
            zero_count(device),
        )

    def weights(
        losses: Tensor,
        state: GradNormState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, GradNormState]:
        del key
        w = state.weights
        num_tasks = check_losses(losses, "gradnorm", w.shape[0])
        g = require_grad_norms(grad_norms, num_tasks, "gradnorm").detach().to(w.dtype)
        x = losses.detach().to(w.dtype)

        initial_losses = torch.where(state.count == 0, x, state.initial_losses)
        inverse_rate = x / initial_losses  # L̃ᵢ(t)
        r = inverse_rate / inverse_rate.mean()
        weighted_norms = w * g  # G⁽ⁱ⁾ = ‖∇_W wᵢLᵢ‖ = wᵢ gᵢ
        target = weighted_norms.mean() * r**alpha  # Ḡ · rᵢ^α, held constant
        grad_w = torch.sign(weighted_norms - target) * g

        updated = torch.clamp_min(w - lr * grad_w, _MIN_WEIGHT)
        updated = updated * (num_tasks / updated.sum())
        return w.to(losses.dtype), GradNormState(updated, initial_losses, state.count + 1)

    return Weighting(init, weights)
