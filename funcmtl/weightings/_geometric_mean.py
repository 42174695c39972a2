"""Geometric loss strategy: minimise the geometric mean of the task losses."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import EmptyState, Weighting, check_losses, stateless_init


@named
def geometric_mean() -> Weighting:
    """Geometric loss strategy: the total loss is ``(Πₜ Lₜ)^{1/T}``, so ``wₜ = GM / (T·Lₜ)``.

    The gradient of the geometric mean ``GM = (Πᵢ Lᵢ)^{1/T}`` is, by the chain rule,

    .. math::

        ∇ GM = Σₜ \\frac{∂ GM}{∂ Lₜ} ∇Lₜ = Σₜ \\frac{GM}{T · Lₜ} ∇Lₜ,

    so weighting the task losses by ``wₜ = GM / (T·Lₜ)`` (held constant) gives exactly the
    gradient of the geometric mean. ``GM`` is computed as ``exp(mean(log L))``, which does not
    overflow or underflow for many tasks. The losses must be positive.

    Returns:
        A :class:`Weighting` whose state is :class:`EmptyState`.

    Example:
        >>> wt = fm.weightings.geometric_mean()
        >>> w, _ = wt.weights(torch.tensor([1.0, 4.0]), wt.init(2))   # GM = 2: [1.0, 0.25]

    References:
        Chennupati, Sistu, Yogamani & Rawashdeh, `MultiNet++: Multi-Stream Feature Aggregation
        and Geometric Loss Strategy for Multi-Task Learning
        <https://openaccess.thecvf.com/content_CVPRW_2019/papers/WAD/Chennupati_MultiNet_Multi-Stream_Feature_Aggregation_and_Geometric_Loss_Strategy_for_Multi-Task_CVPRW_2019_paper.pdf>`_,
        2019.
    """

    def weights(
        losses: Tensor,
        state: EmptyState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, EmptyState]:
        del key, grad_norms
        num_tasks = check_losses(losses, "geometric_mean")
        log_losses = torch.log(losses.detach())
        # ∂GM/∂Lₜ = GM / (T Lₜ) = exp(log GM − log Lₜ) / T, with log GM = mean(log L)
        return torch.exp(log_losses.mean() - log_losses) / num_tasks, state

    return Weighting(stateless_init, weights)
