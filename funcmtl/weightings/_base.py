"""The loss-weighting contract: per-task losses ``(T,)`` -> task weights ``(T,)``.

A loss weighting is ``Weighting(init, weights)``::

    state = init(num_tasks)
    w, state = weights(losses, state, key=key, grad_norms=grad_norms)

``losses`` are the current per-task losses ``(T,)``; they are detached inside, and ``w`` is
always a constant. The train step multiplies the per-task losses (or gradients) by ``w``
before aggregation, so the model follows ``Σₜ wₜ ∇Lₜ``. ``grad_norms`` ``(T,)`` holds
``‖∇_θshared Lₜ‖`` of the *unweighted* losses; the train step supplies it to methods that
need it (GradNorm).

Methods with learnable quantities (Kendall's log-variances, GradNorm's weights, FAMO's
logits, IMTL-L's scales) keep them in the state and update them inside ``weights`` with
their own closed-form gradient step, so the state is an ordinary pytree of tensors: it lives
in the train state, is stacked for ensembles (:func:`funcmtl.tree.stack`) and checkpointed.

Everything is pure torch with no ``.item()`` and no Python branching on tensor values, so a
weighting runs under ``torch.func.vmap`` (a batch of losses and states: K MTL models, each
with its own weighting) and on CUDA. Randomness comes only from ``key``.

States hold floating tensors in the ``dtype`` given to ``init`` (float32 by default);
``weights`` computes in that dtype and returns ``w`` in the dtype of ``losses``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from funcmtl._transform import (
    EmptyState,
    InitFn,
    Options,
    call_repr,
    check_dtype,
    check_init,
    check_num_tasks,
    stateless_init,
)
from funcmtl.optim._checks import check_hyperparameter

__all__ = [
    "EmptyState", "Weighting", "check_dtype", "check_init", "check_losses", "check_num_tasks",
    "stateless_init",
]

WeightingState = Any


class WeightsFn(Protocol):
    def __call__(
        self,
        losses: Tensor,
        state: WeightingState,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, WeightingState]: ...


class Weighting(NamedTuple):
    """``init(num_tasks, *, dtype=float32, device=None) -> state``; ``weights(losses (T,),
    state, *, key=None, grad_norms=None) -> (w (T,), state)``. ``name`` and ``options`` say
    what built it: it prints as that call."""

    init: InitFn
    weights: WeightsFn
    name: str = ""
    options: Options = ()

    def __repr__(self) -> str:
        return call_repr("Weighting", self.name, self.options)


def check_losses(losses: Tensor, method: str, num_tasks: int | None = None) -> int:
    """Raise unless ``losses`` is a floating vector ``(T,)`` (of the state's ``T``); return T.

    Only shapes and dtypes are read, so the check also holds inside ``vmap``.
    """
    if not isinstance(losses, Tensor):
        raise ValueError(
            f"`{method}.weights`: `losses` must be a tensor of shape (T,); "
            f"got {type(losses).__name__}."
        )
    if losses.dim() != 1 or losses.shape[0] == 0:
        raise ValueError(
            f"`{method}.weights`: `losses` must have shape (T,) with T >= 1, one loss per task; "
            f"got shape {tuple(losses.shape)}."
        )
    if not losses.is_floating_point():
        raise ValueError(
            f"`{method}.weights`: `losses` must be floating point; got {losses.dtype}."
        )
    if num_tasks is not None and losses.shape[0] != num_tasks:
        raise ValueError(
            f"`{method}.weights`: `losses` must have shape (T,)=({num_tasks},) as the state "
            f"was made by `init({num_tasks})`; got shape {tuple(losses.shape)}."
        )
    return int(losses.shape[0])


def require_grad_norms(grad_norms: Tensor | None, num_tasks: int, method: str) -> Tensor:
    """The per-task gradient norms ``(T,)``, or a ValueError saying how to pass them."""
    if grad_norms is None:
        raise ValueError(
            f"`{method}` needs the per-task gradient norms: pass `grad_norms=` of shape "
            f"(T,)=({num_tasks},), ‖∇_θshared Lₜ‖ of the unweighted losses; got None."
        )
    if not isinstance(grad_norms, Tensor) or tuple(grad_norms.shape) != (num_tasks,):
        found = tuple(grad_norms.shape) if isinstance(grad_norms, Tensor) else grad_norms
        raise ValueError(
            f"`{method}.weights`: `grad_norms` must have shape (T,)=({num_tasks},); got {found}."
        )
    return grad_norms


def require_key(key: Tensor | None, method: str) -> Tensor:
    """Randomised weightings take their randomness from the key only."""
    if key is None:
        raise ValueError(f"`{method}` is randomised: pass `key=` (from fm.random); got None.")
    return key


def check_positive(name: str, value: Any) -> None:
    """A positive number or a 0-dim tensor (a tensor's value is not read, for vmap sweeps)."""
    check_hyperparameter(name, value, low=0, low_open=True)


def check_non_negative(name: str, value: Any) -> None:
    check_hyperparameter(name, value, low=0)


def check_finite(name: str, value: Any) -> None:
    check_hyperparameter(name, value)


def zero_count(device: Any = None) -> Tensor:
    """The int64 call counter ``0`` (``shape=()``)."""
    return torch.zeros((), dtype=torch.int64, device=device)
