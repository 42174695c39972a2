"""Penalty gradients added to the updates: L2 (weight decay) and L1."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from funcmtl.optim import _leafwise
from funcmtl.optim._base import GradientTransformation, PyTree, stateless
from funcmtl.optim._checks import check_hyperparameter, flatten_updates, require_params


def _add_penalty(
    name: str, strength: float | Tensor, direction: Callable[[list[Tensor]], list[Tensor]]
) -> GradientTransformation:
    # Both penalties are `g + strength * direction(p)`; only the direction differs.
    def add_penalty(updates: PyTree, params: PyTree | None) -> PyTree:
        require_params(params, name)
        gs, rebuild, (ps,) = flatten_updates(updates, name, params)
        return rebuild(_leafwise.add(gs, direction(ps), strength))

    return stateless(add_penalty)


def add_decayed_weights(weight_decay: float | Tensor) -> GradientTransformation:
    """Add the gradient of the L2 penalty ``(wd/2)·‖p‖²``: ``u ← u + wd · p``.

    Placed before an adaptive scaling (as in :func:`adam`) this is ``torch.optim.Adam``'s
    coupled ``weight_decay``; placed after it (as in :func:`adamw`) it is decoupled weight
    decay. Needs ``params`` in ``update``.

    Args:
        weight_decay: a non-negative number or a 0-dim tensor.

    Example:
        >>> opt = fm.optim.chain(fm.optim.add_decayed_weights(1e-4), fm.optim.sgd(0.1))
    """
    check_hyperparameter("weight_decay", weight_decay, low=0)
    return _add_penalty("add_decayed_weights", weight_decay, lambda ps: ps)


def add_l1(strength: float | Tensor) -> GradientTransformation:
    """Add a subgradient of the L1 penalty ``strength·‖p‖₁``: ``u ← u + strength · sign(p)``.

    ``sign(0) = 0``, the minimum-norm subgradient at 0. Needs ``params`` in ``update``.

    Args:
        strength: a non-negative number or a 0-dim tensor.

    Example:
        >>> opt = fm.optim.chain(fm.optim.add_l1(1e-5), fm.optim.sgd(0.1))
    """
    check_hyperparameter("strength", strength, low=0)
    return _add_penalty("add_l1", strength, _leafwise.sign)
