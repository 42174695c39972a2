"""Uncertainty weighting (Kendall et al.): learnable per-task log-variances."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from funcmtl._transform import named
from funcmtl.weightings._base import Weighting, check_finite, check_positive
from funcmtl.weightings._log_scale import log_scale_weighting


class UncertaintyState(NamedTuple):
    log_variance: Tensor  # shape=(T,), sₜ = log σₜ²


@named
def uncertainty(lr: float | Tensor = 0.01, init_log_variance: float = 0.0) -> Weighting:
    """Uncertainty weighting: learnable log-variances ``s``, objective ``Σₜ e^{−sₜ}Lₜ + sₜ``.

    Each task has a homoscedastic noise variance ``σₜ²``, learnt through ``sₜ = log σₜ²``. The
    objective and the weights the model sees are

    .. math::

        \\mathcal{L}(θ, s) = Σₜ e^{−sₜ} Lₜ(θ) + sₜ, \\qquad wₜ = e^{−sₜ}.

    **Constants.** Kendall et al. derive, with ``s = log σ²``, ``½ e^{−s} L + ½ s`` for a
    regression task (Gaussian likelihood, their Eq. 7) and, approximately,
    ``e^{−s} L + ½ s`` for a classification task (scaled softmax, their Eq. 10). This
    implements neither literally but the common simplified form ``e^{−s} L + s`` for every
    task: exactly **twice the regression objective**. It has the regression minimiser
    ``s* = log L`` (the classification form's is ``log 2L``) and its weights ``e^{−s}`` are
    twice Kendall's regression weights ``½ e^{−s}``, i.e. the same training as the regression
    form with the model's and ``s``'s learning rates doubled.

    **Update.** Each call returns the weights of the current ``s``, then takes one SGD step on
    the objective with respect to ``s`` at the given losses::

        ∂𝓛/∂sₜ = 1 − e^{−sₜ} Lₜ,        sₜ ← sₜ − lr · (1 − e^{−sₜ} Lₜ)

    Both ``θ`` (through ``w``) and ``s`` take their gradient at the same point, so this equals
    training ``s`` jointly with the model by plain SGD at rate ``lr``.

    Args:
        lr: learning rate of the log-variances (positive number or 0-dim tensor).
        init_log_variance: the initial ``sₜ`` (0: ``σ² = 1``, all weights 1).

    Returns:
        A :class:`Weighting` whose state is :class:`UncertaintyState`.

    Example:
        >>> wt = fm.weightings.uncertainty(lr=0.1)
        >>> state = wt.init(2)
        >>> w, state = wt.weights(torch.tensor([0.5, 2.0]), state)
        >>> w
        tensor([1., 1.])
        >>> state.log_variance
        tensor([-0.0500,  0.1000])

    References:
        Kendall, Gal & Cipolla, `Multi-Task Learning Using Uncertainty to Weigh Losses for
        Scene Geometry and Semantics
        <https://openaccess.thecvf.com/content_cvpr_2018/papers/Kendall_Multi-Task_Learning_Using_CVPR_2018_paper.pdf>`_,
        2018.
    """
    check_positive("lr", lr)
    check_finite("init_log_variance", init_log_variance)
    return log_scale_weighting("uncertainty", UncertaintyState, -1.0, lr, init_log_variance)
