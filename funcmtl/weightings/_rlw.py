"""Random loss weighting (Lin et al.): fresh random weights at every step."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import random
from funcmtl._transform import named
from funcmtl.weightings._base import (
    EmptyState,
    Weighting,
    check_losses,
    require_key,
    stateless_init,
)


@named
def rlw() -> Weighting:
    """Random loss weighting: ``w = softmax(λ̃)``, ``λ̃ ~ N(0, I)`` drawn from ``key`` each call.

    .. math::

        w = \\operatorname{softmax}(\\tilde λ), \\qquad \\tilde λ \\sim \\mathcal{N}(0, I_T),

    so the weights are positive and **sum to 1** (as in the paper and LibMTL's ``RLW``; the
    weighted loss is a random convex combination of the task losses, on average ``1/T`` of
    the summed loss that :func:`equal` gives). The draw is a pure function of ``key``: the same
    key gives the same weights, and under ``vmap`` each member's key gives its own draw.

    Returns:
        A :class:`Weighting` whose state is :class:`EmptyState`; ``weights`` needs ``key``.

    Example:
        >>> wt = fm.weightings.rlw()
        >>> key, step = fm.random.key(0), 7
        >>> w, _ = wt.weights(torch.ones(3), wt.init(3), key=fm.random.fold_in(key, step))
        >>> w  # random, sums to 1
        tensor([0.4845, 0.4916, 0.0240])

    References:
        Lin, Ye, Xu, Shi & Zhang, `Reasonable Effectiveness of Random Weighting: A Litmus
        Test for Multi-Task Learning <https://openreview.net/forum?id=jjtFD8A1Wx>`_, 2022
        (TMLR; arXiv 2111.10603, 2021).
    """

    def weights(
        losses: Tensor,
        state: EmptyState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, EmptyState]:
        del grad_norms
        num_tasks = check_losses(losses, "rlw")
        key = require_key(key, "rlw")
        logits = random.normal(key, (num_tasks,), dtype=losses.dtype)
        return torch.softmax(logits, dim=0), state

    return Weighting(stateless_init, weights)
