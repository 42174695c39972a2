"""RMSprop: ``scale_by_rms`` and the optimizer built on it (``torch.optim.RMSprop``)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from funcmtl import tree
from funcmtl.optim import _leafwise
from funcmtl.optim._base import GradientTransformation, PyTree, ScalarOrSchedule
from funcmtl.optim._chain import chain
from funcmtl.optim._checks import check_hyperparameter, flatten_updates, is_zero
from funcmtl.optim._momentum import trace
from funcmtl.optim._regularizers import add_decayed_weights
from funcmtl.optim._scale import scale_by_learning_rate


class ScaleByRmsState(NamedTuple):
    """RMSprop's running averages."""

    nu: PyTree  # like params: running average of g², v_t
    mu: PyTree  # like params: running average of g, m_t (centered only; else None)


def scale_by_rms(
    alpha: float | Tensor = 0.99, eps: float | Tensor = 1e-8, centered: bool = False
) -> GradientTransformation:
    """Divide updates by a running root mean square, as ``torch.optim.RMSprop`` does::

        v_t = α v_{t-1} + (1 - α) g²                   (v_0 = 0)
        m_t = α m_{t-1} + (1 - α) g                    (centered only, m_0 = 0)
        u   = g / (√(v_t - m_t²) + ε)                  (centered: minus m_t², else not)

    ``ε`` is added outside the square root and there is no bias correction, as in PyTorch.

    Args:
        alpha: smoothing constant, in [0, 1].
        eps: added to the denominator, ≥ 0.
        centered: normalise by an estimate of the variance instead of the second moment.

    Returns:
        A :class:`GradientTransformation` with state :class:`ScaleByRmsState`.
    """
    check_hyperparameter("alpha", alpha, low=0, high=1)
    check_hyperparameter("eps", eps, low=0)

    def init_fn(params: PyTree) -> ScaleByRmsState:
        mu = tree.zeros_like(params) if centered else None
        return ScaleByRmsState(nu=tree.zeros_like(params), mu=mu)

    def update_fn(
        updates: PyTree, state: ScaleByRmsState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByRmsState]:
        del params
        moments = (state.nu, state.mu) if centered else (state.nu,)
        gs, rebuild, (nu, *mu) = flatten_updates(updates, "scale_by_rms", *moments)
        nu = _leafwise.ema_square(nu, gs, alpha)  # v_t
        if centered:
            mu = _leafwise.lerp(mu[0], gs, 1 - alpha)  # m_t
            variance = _leafwise.addcmul(nu, mu, mu, -1)  # v_t - m_t²
            new_mu = rebuild(mu)
        else:
            variance, new_mu = nu, None
        denom = _leafwise.add_scalar(_leafwise.sqrt(variance), eps)
        out = _leafwise.div(gs, denom)
        return rebuild(out), ScaleByRmsState(nu=rebuild(nu), mu=new_mu)

    return GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    alpha: float | Tensor = 0.99,
    eps: float | Tensor = 1e-8,
    momentum: float | Tensor = 0.0,
    centered: bool = False,
    weight_decay: float | Tensor = 0.0,
) -> GradientTransformation:
    """RMSprop with ``torch.optim.RMSprop``'s options::

        g ← g + wd · p                                  (L2 penalty)
        r = g / (√(v_t [- m_t²]) + ε)                   (see :func:`scale_by_rms`)
        b_t = μ b_{t-1} + r                             (only if momentum μ ≠ 0)
        u = -lr · (b_t or r)

    Args:
        learning_rate: a positive number, a 0-dim tensor or a schedule ``count -> lr``.
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added to the denominator, ≥ 0.
        momentum: momentum on the normalised update, ≥ 0 (0: left out).
        centered: normalise by the gradient's estimated variance.
        weight_decay: L2 coefficient added to the gradient, ≥ 0 (0: left out).

    Returns:
        A :class:`GradientTransformation` equal, step for step, to ``torch.optim.RMSprop``.

    Example:
        >>> opt = fm.optim.rmsprop(1e-2, momentum=0.9, centered=True)
        >>> state = opt.init({"w": torch.ones(3)})
        >>> state[1]  # the momentum buffer
        TraceState(trace={'w': tensor([0., 0., 0.])})

    References:
        Tieleman & Hinton, Lecture 6.5 — RMSprop, COURSERA: Neural Networks for Machine
        Learning, 2012; Graves, `Generating Sequences With Recurrent Neural Networks
        <https://arxiv.org/abs/1308.0850>`_ (centered form), 2013.
    """
    check_hyperparameter("learning_rate", learning_rate, low=0, low_open=True, or_schedule=True)
    check_hyperparameter("momentum", momentum, low=0)
    return chain(
        *([] if is_zero(weight_decay) else [add_decayed_weights(weight_decay)]),
        scale_by_rms(alpha, eps, centered),
        *([] if is_zero(momentum) else [trace(momentum)]),
        scale_by_learning_rate(learning_rate),
    )
