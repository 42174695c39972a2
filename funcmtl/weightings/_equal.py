"""Equal weighting: every task gets weight 1."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import EmptyState, Weighting, check_losses, stateless_init


@named
def equal() -> Weighting:
    """Equal weighting: ``w = 1`` for every task, so the model follows ``Σₜ ∇Lₜ``.

    The baseline every other weighting is compared with (LibMTL's ``EW``).

    Returns:
        A :class:`Weighting` whose state is :class:`EmptyState`.

    Example:
        >>> wt = fm.weightings.equal()
        >>> state = wt.init(3)
        >>> w, state = wt.weights(torch.tensor([0.3, 1.2, 2.0]), state)   # [1., 1., 1.]

    References:
        Caruana, `Multitask Learning <https://doi.org/10.1023/A:1007379606734>`_, 1997.
    """

    def weights(
        losses: Tensor,
        state: EmptyState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, EmptyState]:
        del key, grad_norms
        check_losses(losses, "equal")
        return torch.ones_like(losses), state

    return Weighting(stateless_init, weights)
