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
from funcmtl._transform import EmptyState
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

    ``apply_donated``, when set, is a faster equivalent of ``update`` followed by
    :func:`apply_updates` that may overwrite the buffers of ``params`` and ``state`` (buffer
    donation, as JAX's ``donate_argnums``): ``apply_donated(params, grads, state) ->
    (params, state)``. Only :func:`update_params` with ``donate=True`` calls it.
    """

    init: TransformInitFn
    update: TransformUpdateFn
    apply_donated: Callable[[PyTree, PyTree, OptState], tuple[PyTree, OptState]] | None = None


def zero_count(params: PyTree) -> Tensor:
    """The int64 step counter ``0`` (``shape=()``), on the device of the first param."""
    xs = tree.leaves(params)
    device = xs[0].device if xs else None
    return torch.zeros((), dtype=torch.int64, device=device)


def stateless(update: Callable[[PyTree, PyTree | None], PyTree]) -> GradientTransformation:
    """Build a transform without state from a pure ``update(updates, params) -> updates``.

    ``init`` returns :class:`EmptyState` and ``update`` passes ``params`` through (``None``
    when the caller gives none), so a custom rule is only its arithmetic.

    Args:
        update: ``(updates, params) -> updates`` on pytrees of tensors; ``params`` is
            ``None`` when the caller passes none.

    Returns:
        A :class:`GradientTransformation` whose state is :class:`EmptyState`.

    Example:
        >>> sign = fm.optim.stateless(lambda updates, params: fm.tree.map(torch.sign, updates))
        >>> opt = fm.optim.chain(sign, fm.optim.sgd(1e-3))  # signSGD
    """

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        return update(updates, params), state

    return GradientTransformation(init_fn, update_fn)


def identity() -> GradientTransformation:
    """Leave the updates unchanged (e.g. for a :func:`partition` group handled elsewhere)."""
    return stateless(lambda updates, params: updates)


def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: the leaves it sees stay frozen.

    Example:
        >>> params = {"trunk.w": torch.ones(2), "head.w": torch.ones(2)}
        >>> frozen_trunk = fm.optim.partition({"trunk": fm.optim.set_to_zero(),
        ...                                    "head": fm.optim.sgd(0.1)},
        ...                                   lambda name: name.split(".")[0])
        >>> state = frozen_trunk.init(params)
        >>> frozen_trunk.update({"trunk.w": torch.ones(2), "head.w": torch.ones(2)},
        ...                     state, params)[0]
        {'trunk.w': tensor([0., 0.]), 'head.w': tensor([-0.1000, -0.1000])}
    """
    return stateless(lambda updates, params: tree.zeros_like(updates))


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


def update_params(
    transform: GradientTransformation,
    grads: PyTree,
    state: OptState,
    params: PyTree,
    *,
    donate: bool = False,
) -> tuple[PyTree, OptState]:
    """One optimizer step: ``(params, state) -> (new_params, new_state)``.

    With ``donate=True`` and a transform that offers ``apply_donated`` (plain ``sgd``,
    ``adam``, ``adamw`` with number hyperparameters) and plain tensors (not inside
    ``vmap``/``grad``), torch's fused in-place kernels do the step: the buffers of ``params``
    and ``state`` are reused, so the caller must not use them again. Otherwise this is the
    pure ``update`` + :func:`apply_updates`.
    """
    if donate and transform.apply_donated is not None:
        if _leafwise.use_foreach(tree.leaves(params), tree.leaves(grads)):
            return transform.apply_donated(params, grads, state)
    updates, state = transform.update(grads, state, params)
    return apply_updates(params, updates), state
