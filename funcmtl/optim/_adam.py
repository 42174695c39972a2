"""Adam and AdamW: ``scale_by_adam`` and the two optimizers built on it."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl.optim import _fused, _leafwise
from funcmtl.optim._base import GradientTransformation, PyTree, ScalarOrSchedule, zero_count
from funcmtl.optim._chain import chain
from funcmtl.optim._checks import check_hyperparameter, flatten_updates, is_zero
from funcmtl.optim._regularizers import add_decayed_weights
from funcmtl.optim._scale import scale_by_learning_rate


class ScaleByAdamState(NamedTuple):
    """Adam's step counter and moment estimates."""

    count: Tensor  # shape=(), int64: number of updates done so far
    mu: PyTree  # like params: first moment m_t
    nu: PyTree  # like params: second moment v_t


def _bias_correction(decay: float | Tensor, count: Tensor) -> Tensor:
    # 1 - β^t in float64: in float32, 1 - 0.999 already loses five digits.
    return 1 - torch.pow(decay, count.to(torch.float64))


def scale_by_adam(
    b1: float | Tensor = 0.9, b2: float | Tensor = 0.999, eps: float | Tensor = 1e-8
) -> GradientTransformation:
    """Rescale updates by Adam's bias-corrected moments (no learning rate, no sign flip).

    With ``t`` the 1-based step and ``g`` the incoming update::

        m_t = β₁ m_{t-1} + (1 - β₁) g
        v_t = β₂ v_{t-1} + (1 - β₂) g²
        u   = (m_t / (1 - β₁ᵗ)) / (√v_t / √(1 - β₂ᵗ) + ε)

    ``ε`` is added outside the square root, as in ``torch.optim.Adam``.

    Args:
        b1, b2: decay rates of the moments, in [0, 1).
        eps: added to the denominator for numerical stability, ≥ 0.

    Returns:
        A :class:`GradientTransformation` with state :class:`ScaleByAdamState`.
    """
    check_hyperparameter("b1", b1, low=0, high=1, high_open=True)
    check_hyperparameter("b2", b2, low=0, high=1, high_open=True)
    check_hyperparameter("eps", eps, low=0)

    def init_fn(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=zero_count(params), mu=tree.zeros_like(params), nu=tree.zeros_like(params)
        )

    def update_fn(
        updates: PyTree, state: ScaleByAdamState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByAdamState]:
        del params
        gs, rebuild, (mu, nu) = flatten_updates(updates, "scale_by_adam", state.mu, state.nu)
        count = state.count + 1
        mu = _leafwise.lerp(mu, gs, 1 - b1)  # m_t
        nu = _leafwise.ema_square(nu, gs, b2)  # v_t
        dtype = gs[0].dtype if gs else torch.float32
        correction1 = _bias_correction(b1, count).to(dtype)
        correction2_sqrt = torch.sqrt(_bias_correction(b2, count)).to(dtype)
        denom = _leafwise.add_scalar(_leafwise.div(_leafwise.sqrt(nu), correction2_sqrt), eps)
        out = _leafwise.mul(_leafwise.div(mu, denom), 1 / correction1)
        return rebuild(out), ScaleByAdamState(count=count, mu=rebuild(mu), nu=rebuild(nu))

    return GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float | Tensor = 0.9,
    b2: float | Tensor = 0.999,
    eps: float | Tensor = 1e-8,
    weight_decay: float | Tensor = 0.0,
) -> GradientTransformation:
    """Adam, with ``torch.optim.Adam``'s coupled L2 ``weight_decay``.

    ::

        g   ← g + wd · p                       (L2 penalty, before the moments)
        u   = -lr · (m̂_t / (√v̂_t + ε))         (see :func:`scale_by_adam`)

    Args:
        learning_rate: a positive number, a 0-dim tensor or a schedule ``count -> lr``.
        b1, b2: decay rates of the first and second moments, in [0, 1).
        eps: added to the denominator, ≥ 0.
        weight_decay: L2 coefficient added to the gradient, ≥ 0 (0: left out).

    Returns:
        A :class:`GradientTransformation` equal, step for step, to ``torch.optim.Adam``.

    Example:
        >>> params, grads = {"w": torch.ones(3)}, {"w": torch.tensor([1.0, -2.0, 0.5])}
        >>> opt = fm.optim.adam(0.1)
        >>> state = opt.init(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> fm.optim.apply_updates(params, updates)  # the first step is -lr * sign(grad)
        {'w': tensor([0.9000, 1.1000, 0.9000])}

    References:
        Kingma & Ba, `Adam: A Method for Stochastic Optimization
        <https://arxiv.org/abs/1412.6980>`_, 2015.
    """
    check_hyperparameter("learning_rate", learning_rate, low=0, low_open=True, or_schedule=True)
    decays = not is_zero(weight_decay)
    transform = chain(
        *([add_decayed_weights(weight_decay)] if decays else []),
        scale_by_adam(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )
    if not _fused.fusable(learning_rate, b1, b2, eps, weight_decay):
        return transform
    donated = _fused.donated_adam(
        learning_rate, b1, b2, eps, weight_decay, decoupled=False, moments_index=int(decays)
    )
    return _fused.with_donated(transform, donated)


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float | Tensor = 0.9,
    b2: float | Tensor = 0.999,
    eps: float | Tensor = 1e-8,
    weight_decay: float | Tensor = 1e-2,
) -> GradientTransformation:
    """AdamW: Adam with weight decay decoupled from the moments (``torch.optim.AdamW``).

    ::

        u = -lr · (m̂_t / (√v̂_t + ε) + wd · p)

    so ``p ← (1 - lr·wd) p - lr · m̂_t / (√v̂_t + ε)``; the decay follows the learning-rate
    schedule, as in PyTorch.

    Args:
        learning_rate: a positive number, a 0-dim tensor or a schedule ``count -> lr``.
        b1, b2: decay rates of the first and second moments, in [0, 1).
        eps: added to the denominator, ≥ 0.
        weight_decay: decoupled decay coefficient, ≥ 0.

    Returns:
        A :class:`GradientTransformation` equal, step for step, to ``torch.optim.AdamW``.

    Example:
        >>> opt = fm.optim.adamw(fm.optim.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000))
        >>> state = opt.init({"w": torch.ones(3)})
        >>> state[0].mu
        {'w': tensor([0., 0., 0.])}

    References:
        Loshchilov & Hutter, `Decoupled Weight Decay Regularization
        <https://arxiv.org/abs/1711.05101>`_, 2019.
    """
    check_hyperparameter("learning_rate", learning_rate, low=0, low_open=True, or_schedule=True)
    transform = chain(
        scale_by_adam(b1, b2, eps),
        *([] if is_zero(weight_decay) else [add_decayed_weights(weight_decay)]),
        scale_by_learning_rate(learning_rate),
    )
    if not _fused.fusable(learning_rate, b1, b2, eps, weight_decay):
        return transform
    donated = _fused.donated_adam(
        learning_rate, b1, b2, eps, weight_decay, decoupled=True, moments_index=0
    )
    return _fused.with_donated(transform, donated)

