"""The transform contract: ``GradientTransformation``, its state types and ``apply_updates``.

A gradient transformation is a pair of pure functions::

    state = init(params)
    updates, state = update(updates, state, params)   # params optional for most transforms
    params = apply_updates(params, updates)           # params + updates, leaf by leaf

Updates are *added* to the params, so an optimizer's last step multiplies by ``-lr``. All
trees may be any pytree of tensors; ensembles add a leading member axis to every leaf and
run ``init``/``update`` under ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from funcmtl import tree
from funcmtl.optim import _leafwise

PyTree = Any
OptState = Any
Schedule = Callable[[Tensor], Tensor]
"""A function ``count -> value`` of the int64 step counter ``count`` (``shape=()``)."""
ScalarOrSchedule = float | Tensor | Schedule


class TransformInitFn(Protocol):
    def __call__(self, params: PyTree) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: PyTree, state: OptState, params: PyTree | None = None
    ) -> tuple[PyTree, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure gradient transformation: ``init(params) -> state`` and
    ``update(updates, state, params=None) -> (updates, state)``.
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


def zero_count(params: PyTree) -> Tensor:
    """The int64 step counter ``0`` (``shape=()``), on the device of the first param."""
    xs = tree.leaves(params)
    device = xs[0].device if xs else None
    return torch.zeros((), dtype=torch.int64, device=device)


def identity() -> GradientTransformation:
    """Leave the updates unchanged (e.g. for a :func:`partition` group handled elsewhere)."""

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
        return updates, state

    return GradientTransformation(init_fn, update_fn)


def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: the leaves it sees stay frozen.

    Example:
        >>> frozen_trunk = fm.optim.partition({"trunk": fm.optim.set_to_zero(),
        ...                                    "head": fm.optim.adam(1e-3)}, labels)
    """

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
        return tree.zeros_like(updates), state

    return GradientTransformation(init_fn, update_fn)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Return ``params + updates`` leaf by leaf, in each param's dtype; inputs are not changed.

    Args:
        params: a pytree of tensors.
        updates: a pytree of the same structure, e.g. from a transform's ``update``.

    Returns:
        A new pytree with the structure of ``params``.

    Raises:
        ValueError: if the two trees differ in structure.
    """
    ps, spec = pytree.tree_flatten(params)
    us, updates_spec = pytree.tree_flatten(updates)
    if updates_spec != spec:
        tree.check_same_structure([params, updates], what="`params` and `updates`")
    new = _leafwise.add(ps, us, 1)
    return spec.unflatten([n.to(p.dtype) for n, p in zip(new, ps, strict=True)])
