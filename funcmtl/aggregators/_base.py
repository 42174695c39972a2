"""The aggregator contract: per-task gradients ``[T, ...]`` -> one update direction.

An aggregator is ``Aggregator(init, update, weights)``::

    state = init(num_tasks)
    direction, state = update(task_grads, state, key=key)

``task_grads`` is a tensor ``(T, P)`` or any pytree whose leaves all have the leading task
axis ``T`` (e.g. ``{"trunk.0.weight": (T, 512, 128), ...}``); ``direction`` has the same
structure without that axis. Everything is pure torch with fixed iteration counts, so an
aggregator runs under ``vmap`` (K models, each with its own gradient surgery) and on CUDA.

Most methods are a *weighting* of the Gramian ``G = J Jᵀ``: they choose weights ``w (T,)`` and
return ``Jᵀ w``. Those expose ``weights(gramian, state, key=key) -> (w, state)``, so a caller
can take the cheap path — weights from a Gramian accumulated chunk by chunk, then one
backward of ``Σ wₜ Lₜ`` — without ever holding ``J``. :func:`from_weighting` builds
``update`` from ``weights``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import einops
import torch
from torch import Tensor

from funcmtl import tree

PyTree = Any
AggregatorState = Any


class InitFn(Protocol):
    def __call__(self, num_tasks: int) -> AggregatorState: ...


class UpdateFn(Protocol):
    def __call__(
        self, task_grads: PyTree, state: AggregatorState, *, key: Tensor | None = None
    ) -> tuple[PyTree, AggregatorState]: ...


class WeightsFn(Protocol):
    def __call__(
        self, gramian: Tensor, state: AggregatorState, *, key: Tensor | None = None
    ) -> tuple[Tensor, AggregatorState]: ...


class Aggregator(NamedTuple):
    """``init(num_tasks) -> state``; ``update(task_grads, state, *, key=None) -> (direction,
    state)``; ``weights(gramian, state, *, key=None) -> (weights (T,), state)`` or ``None``
    for methods that are not a weighting of the Gramian (e.g. GradDrop)."""

    init: InitFn
    update: UpdateFn
    weights: WeightsFn | None = None


class EmptyState(NamedTuple):
    """The state of a stateless aggregator."""


def stateless_init(num_tasks: int) -> EmptyState:
    check_num_tasks(num_tasks)
    return EmptyState()


def check_num_tasks(num_tasks: int) -> None:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"`num_tasks` must be a positive integer; got {num_tasks!r}.")


def num_tasks_of(task_grads: PyTree) -> int:
    """The common leading task axis ``T`` of every leaf, checked once at the boundary."""
    leaves = tree.leaves(task_grads)
    if not leaves:
        raise ValueError("`task_grads` must hold at least one tensor; got an empty pytree.")
    sizes = {x.shape[0] if x.dim() else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        found = [tuple(x.shape) for x in leaves][:5]
        raise ValueError(
            "`task_grads` must have a leading task axis T on every leaf, shape (T, ...); "
            f"got leaf shapes {found}."
        )
    if not all(x.is_floating_point() for x in leaves):
        raise ValueError("`task_grads` must be floating point; got an integer tensor.")
    return int(sizes.pop())


def gramian(task_grads: PyTree) -> Tensor:
    """``G = J Jᵀ`` ``(T, T)``, summed leaf by leaf (no concatenated ``J`` is built)."""
    blocks = [einops.rearrange(x, "tasks ... -> tasks (...)") for x in tree.leaves(task_grads)]
    return sum(b @ b.T for b in blocks)


def combine(weights: Tensor, task_grads: PyTree) -> PyTree:
    """``Jᵀ w``: the weighted sum over the task axis, leaf by leaf."""
    return tree.map(lambda x: torch.tensordot(weights.to(x.dtype), x, dims=1), task_grads)


def from_weighting(init: InitFn, weights: WeightsFn) -> Aggregator:
    """An aggregator that returns ``Jᵀ w`` with ``w`` from ``weights(J Jᵀ)``."""

    def update(task_grads: PyTree, state: AggregatorState, *, key: Tensor | None = None):
        num_tasks_of(task_grads)
        w, state = weights(gramian(task_grads), state, key=key)
        return combine(w, task_grads), state

    return Aggregator(init, update, weights)


def check_gramian(gram: Tensor) -> int:
    """Raise unless ``gram`` is a square ``(T, T)`` floating tensor; return ``T``."""
    if not isinstance(gram, Tensor) or gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        found = tuple(gram.shape) if isinstance(gram, Tensor) else type(gram).__name__
        raise ValueError(f"`gramian` must be a square matrix of shape (T, T); got {found}.")
    return int(gram.shape[0])


def require_key(key: Tensor | None, method: str) -> Tensor:
    """Randomised methods take their randomness from the key only."""
    if key is None:
        raise ValueError(f"`{method}` is randomised: pass `key=` (from fm.random); got None.")
    return key
