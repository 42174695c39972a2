"""Stochastic gradient descent, with momentum, Nesterov and L2 weight decay."""

from __future__ import annotations

from torch import Tensor

from funcmtl.optim import _fused
from funcmtl.optim._base import GradientTransformation, ScalarOrSchedule
from funcmtl.optim._chain import chain
from funcmtl.optim._checks import check_hyperparameter, is_zero
from funcmtl.optim._momentum import trace
from funcmtl.optim._regularizers import add_decayed_weights
from funcmtl.optim._scale import scale_by_learning_rate


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | Tensor = 0.0,
    nesterov: bool = False,
    weight_decay: float | Tensor = 0.0,
) -> GradientTransformation:
    """SGD with ``torch.optim.SGD``'s options (``dampening=0``)::

        g   ← g + wd · p                       (L2 penalty)
        m_t = g + μ m_{t-1}                    (m_0 = 0; only if momentum μ ≠ 0)
        u   = -lr · m_t                        (Nesterov: -lr · (g + μ m_t))

    Args:
        learning_rate: a positive number, a 0-dim tensor or a schedule ``count -> lr``.
        momentum: momentum coefficient μ, ≥ 0 (0: no momentum buffer in the state).
        nesterov: use Nesterov momentum; needs a momentum other than 0.
        weight_decay: L2 coefficient added to the gradient, ≥ 0 (0: left out).

    Returns:
        A :class:`GradientTransformation` equal, step for step, to ``torch.optim.SGD``.

    Example:
        >>> params, grads = {"w": torch.ones(3)}, {"w": torch.tensor([1.0, -2.0, 0.5])}
        >>> opt = fm.optim.sgd(0.1, momentum=0.9, nesterov=True)
        >>> state = opt.init(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> fm.optim.apply_updates(params, updates)
        {'w': tensor([0.8100, 1.3800, 0.9050])}

    References:
        Robbins & Monro, `A Stochastic Approximation Method
        <https://doi.org/10.1214/aoms/1177729586>`_, 1951; Sutskever et al., `On the
        importance of initialization and momentum in deep learning
        <https://proceedings.mlr.press/v28/sutskever13.html>`_, 2013.
    """
    check_hyperparameter("learning_rate", learning_rate, low=0, low_open=True, or_schedule=True)
    check_hyperparameter("momentum", momentum, low=0)
    if nesterov and is_zero(momentum):
        raise ValueError("`nesterov=True` needs a momentum other than 0; got momentum=0.")
    decays, has_momentum = not is_zero(weight_decay), not is_zero(momentum)
    transform = chain(
        *([add_decayed_weights(weight_decay)] if decays else []),
        *([trace(momentum, nesterov=nesterov)] if has_momentum else []),
        scale_by_learning_rate(learning_rate),
    )
    if not _fused.fusable(learning_rate, momentum, weight_decay):
        return transform
    donated = _fused.donated_sgd(
        learning_rate,
        float(momentum),
        nesterov,
        float(weight_decay),
        trace_index=int(decays) if has_momentum else None,
    )
    return _fused.with_donated(transform, donated)
