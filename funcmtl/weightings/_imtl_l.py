"""IMTL-L (Liu et al.): learnable loss scales that equalise the scaled losses."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import Weighting, check_finite, check_positive
from funcmtl.weightings._log_scale import log_scale_weighting


class ImtlLState(NamedTuple):
    log_scale: Tensor  # shape=(T,), sₜ; the loss scale is e^{sₜ}


@named
def imtl_l(lr: float | Tensor = 0.01, init_log_scale: float = 0.0) -> Weighting:
    """IMTL-L: learnable scales ``e^{s}``, objective ``Σₜ e^{sₜ}Lₜ − sₜ``, weights ``e^{s}``.

    The loss-balance half of Impartial MTL: each task's loss is scaled by ``e^{sₜ}`` and the
    ``−sₜ`` term keeps ``sₜ`` from collapsing to ``−∞``,

    .. math::

        \\mathcal{L}(θ, s) = Σₜ e^{sₜ} Lₜ(θ) − sₜ, \\qquad wₜ = e^{sₜ}.

    At the optimum over ``s`` every scaled loss ``e^{sₜ} Lₜ`` equals 1, so no task dominates
    by the size of its loss. (The gradient-balance half, IMTL-G, is an aggregator.)

    **Update.** Each call returns the weights of the current ``s``, then takes one SGD step on
    the objective with respect to ``s`` at the given losses::

        ∂𝓛/∂sₜ = e^{sₜ} Lₜ − 1,        sₜ ← sₜ − lr · (e^{sₜ} Lₜ − 1)

    Both ``θ`` (through ``w``) and ``s`` take their gradient at the same point, so this equals
    training ``s`` jointly with the model by plain SGD at rate ``lr``.

    Args:
        lr: learning rate of the log-scales (positive number or 0-dim tensor).
        init_log_scale: the initial ``sₜ`` (0: all weights 1).

    Returns:
        A :class:`Weighting` whose state is :class:`ImtlLState`.

    Example:
        >>> wt = fm.weightings.imtl_l(lr=0.1)
        >>> state = wt.init(2)
        >>> w, state = wt.weights(torch.tensor([0.5, 2.0]), state)
        >>> w
        tensor([1., 1.])
        >>> state.log_scale
        tensor([ 0.0500, -0.1000])

    References:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, `Towards Impartial Multi-task Learning
        <https://openreview.net/forum?id=IMPnRXEWpvr>`_, 2021.
    """
    check_positive("lr", lr)
    check_finite("init_log_scale", init_log_scale)
    return log_scale_weighting("imtl_l", ImtlLState, 1.0, lr, init_log_scale)
