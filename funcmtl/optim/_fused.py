"""Donated steps of ``sgd``, ``adam`` and ``adamw`` on torch's fused in-place kernels.

The pure transforms allocate a fresh tensor for every moment, update and parameter at every
step. On CPU, fresh large tensors cost page faults on top of the arithmetic, and an Adam
step written as separate ops passes over memory about seven times. torch's fused kernels
(``torch._fused_adam_``, ``_fused_adamw_``, ``_fused_sgd_``, the ones behind
``torch.optim.Adam(fused=True)``) make one in-place pass. Because the math is elementwise,
the same call is right for a stacked ensemble: every member gets its own update.

These functions build ``GradientTransformation.apply_donated`` for the optimizers whose
hyperparameters are all Python numbers (a tensor hyperparameter may differ per member, which
a single fused call cannot express); the learning rate may also be a schedule. The step
counters in the state are read, not branched on: members of a stacked ensemble always share
one count (they are initialised and stepped together), so the first entry stands for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl.optim._base import GradientTransformation, OptState, PyTree

Donated = Callable[[PyTree, PyTree, OptState], tuple[PyTree, OptState]]


def fusable(learning_rate: Any, *hyperparameters: Any) -> bool:
    """True when every hyperparameter is a Python number and the learning rate is a number
    or a schedule (one value per step); a tensor may differ per member, so it is not."""
    values = hyperparameters if callable(learning_rate) else (learning_rate, *hyperparameters)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _learning_rate(learning_rate: Any, state: OptState) -> float | Tensor:
    # The optimizers end with scale_by_learning_rate, whose state holds a schedule's count.
    if callable(learning_rate):
        return learning_rate(state[-1].count.reshape(-1)[0]).to(torch.float32)
    return learning_rate


def _advance(state: OptState) -> OptState:
    """Every step counter in the chain's state plus one (the rest was updated in place)."""
    return tuple(
        entry._replace(count=entry.count + 1) if "count" in getattr(entry, "_fields", ()) else entry
        for entry in state
    )


def _leaves(params: PyTree, grads: PyTree) -> tuple[list[Tensor], list[Tensor]]:
    tree.check_same_structure([params, grads], what="`params` and `grads`")
    return tree.leaves(params), tree.leaves(grads)


def donated_adam(
    learning_rate: Any,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    *,
    decoupled: bool,
    moments_index: int,
) -> Donated:
    """``apply_donated`` for ``adam`` (coupled L2) or ``adamw`` (``decoupled=True``), whose
    chain holds the ``ScaleByAdamState`` at ``moments_index``."""
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_

    def apply_donated(params: PyTree, grads: PyTree, state: OptState):
        ps, gs = _leaves(params, grads)
        moments = state[moments_index]
        step = (moments.count.reshape(-1)[0] + 1).to(torch.float32)
        kernel(
            ps,
            gs,
            tree.leaves(moments.mu),
            tree.leaves(moments.nu),
            [],
            [step] * len(ps),
            lr=_learning_rate(learning_rate, state),
            beta1=b1,
            beta2=b2,
            weight_decay=weight_decay,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )
        return params, _advance(state)

    return apply_donated


def donated_sgd(
    learning_rate: Any,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    *,
    trace_index: int | None,
) -> Donated:
    """``apply_donated`` for ``sgd``, whose chain holds the momentum ``TraceState`` at
    ``trace_index`` (``None``: no momentum). Buffers start at zero, so ``m_1 = g`` as in
    ``torch.optim.SGD``."""

    def apply_donated(params: PyTree, grads: PyTree, state: OptState):
        ps, gs = _leaves(params, grads)
        torch._fused_sgd_(
            ps,
            gs,
            [] if trace_index is None else tree.leaves(state[trace_index].trace),
            weight_decay=weight_decay,
            momentum=momentum,
            lr=_learning_rate(learning_rate, state),
            dampening=0.0,
            nesterov=nesterov,
            maximize=False,
            is_first_step=False,
        )
        return params, _advance(state)

    return apply_donated


def with_donated(transform: GradientTransformation, donated: Donated | None):
    """``transform`` with its ``apply_donated`` set (or left unset for ``None``)."""
    return transform._replace(apply_donated=donated)
