"""Input checks shared by every factory and every ``update``, with one message template.

Hyperparameters are checked when the transform is built. A tensor must be 0-dim, and its
value is checked like a number's when reading it is free: a plain CPU tensor. Inside ``vmap``
(a sweep), under ``torch.compile`` or on an accelerator the value is not read, since that
would need ``.item()``: impossible under vmap, a graph break, a device sync.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from funcmtl import tree


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low == 0 and low_open and high is None:
        return "a positive number"
    if low == 0 and high is None:
        return "a non-negative number"
    if low is None and high is None:
        return "a finite number"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"a number in {left}{low}, {high}{right}"


def check_hyperparameter(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    or_schedule: bool = False,
    or_none: bool = False,
) -> None:
    """Raise if ``value`` is not a number in the range, a 0-dim tensor or (optionally) callable
    or ``None``.

    Args:
        name: the argument's name, as the user wrote it.
        value: what the user passed.
        low, high: the bounds of the allowed range (``None``: unbounded on that side).
        low_open, high_open: whether the bound itself is excluded.
        or_schedule: whether a callable ``count -> value`` is also accepted.
        or_none: whether ``None`` is also accepted (a default computed later).

    Raises:
        ValueError: a number outside the range, or a tensor that is not 0-dim.
        TypeError: anything else.
    """
    expected = _describe(low, high, low_open, high_open)
    expected += ", a 0-dim tensor or a schedule" if or_schedule else " or a 0-dim tensor"
    if or_none:
        expected = "None, " + expected
    if (or_schedule and callable(value) and not isinstance(value, Tensor)) or (
        or_none and value is None
    ):
        return
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise ValueError(
                f"`{name}` must be {expected}; got a tensor of shape {tuple(value.shape)}."
            )
        if not _readable(value):
            return
        number = float(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be {expected}; got {value!r} of type {type(value)}.")
    else:
        number = value
    inside = math.isfinite(number)
    if low is not None:
        inside = inside and (number > low if low_open else number >= low)
    if high is not None:
        inside = inside and (number < high if high_open else number <= high)
    if not inside:
        raise ValueError(f"`{name}` must be {expected}; got {value!r}.")


def _readable(value: Tensor) -> bool:
    """Whether reading ``value`` costs nothing: an ordinary CPU tensor outside any transform."""
    return (
        value.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(value)
        and type(value) in (Tensor, torch.nn.Parameter)
        and not value.is_complex()
    )


def is_zero(value: Any) -> bool:
    """True for a Python number equal to 0: the term it scales can be left out entirely.

    A tensor is never "zero" here, so a sweep that passes tensors keeps one state structure.
    """
    return isinstance(value, int | float) and value == 0


def flatten_updates(
    updates: Any, transform: str, *state_trees: Any
) -> tuple[list[Tensor], Callable[[list[Tensor]], Any], list[list[Tensor]]]:
    """Flatten ``updates`` and the param-shaped ``state_trees``, checking they share a structure.

    Flattening once and comparing the specs keeps the Python overhead per update low.

    Returns:
        ``(update_leaves, rebuild, [leaves of each state tree])``, where ``rebuild(leaves)``
        makes a tree with the structure of ``updates``.

    Raises:
        ValueError: naming the missing or unexpected leaves, as :func:`check_updates`.
    """
    leaves, spec = pytree.tree_flatten(updates)
    state_leaves = []
    for reference in state_trees:
        reference_leaves, reference_spec = pytree.tree_flatten(reference)
        if reference_spec != spec:
            check_updates(updates, reference, transform)
        state_leaves.append(reference_leaves)
    return leaves, spec.unflatten, state_leaves


def check_updates(updates: Any, reference: Any, transform: str) -> None:
    """Raise ``ValueError`` if ``updates`` does not have the structure of ``reference``.

    Args:
        updates: the tree given to ``update``.
        reference: a tree from the state, built by ``init`` from the params.
        transform: the transform's name, used in the message.
    """
    tree.check_same_structure(
        [reference, updates],
        what=f"the state that `{transform}.init` built (entry 0) and the `updates` given to "
        f"`{transform}.update` (entry 1)",
    )


def require_params(params: Any, transform: str) -> None:
    """Raise ``ValueError`` if a transform that reads the params was not given them."""
    if params is None:
        raise ValueError(
            f"`{transform}.update` needs the current params; got params=None. Pass them as "
            "`update(updates, state, params)`."
        )
