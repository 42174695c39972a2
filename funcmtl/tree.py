"""Pytree helpers: the small algebra every other module is written in.

A *pytree* is any nesting of dicts, lists, tuples and NamedTuples whose leaves are tensors:
model params (``dict[str, Tensor]``), optimizer states, train states. These helpers are thin,
checked wrappers over :mod:`torch.utils._pytree`; they work inside ``torch.func.vmap`` and
``torch.func.grad`` because they only call ordinary tensor ops.

Ensembles stack K trees along a new leading *member* axis (:func:`stack`); per-task gradients
carry a leading *task* axis. :func:`ravel` flattens a tree into one vector, e.g. ``(params,)``,
and returns the inverse.

Example:
    >>> import torch, funcmtl as fm
    >>> a = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    >>> fm.tree.size(a)
    9
    >>> stacked = fm.tree.stack([a, a, a])
    >>> stacked["w"].shape
    torch.Size([3, 2, 3])
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree

__all__ = [
    "add",
    "check_same_structure",
    "dot",
    "leaves",
    "map",
    "norm",
    "ravel",
    "scale",
    "size",
    "stack",
    "structure",
    "sub",
    "unravel",
    "unstack",
    "zeros_like",
]

PyTree = Any


def leaves(tree: PyTree) -> list[torch.Tensor]:
    """Return the leaves of ``tree`` in a fixed order (dicts by insertion order)."""
    if isinstance(tree, torch.Tensor):  # the common single tensor: no traversal (~5 µs)
        return [tree]
    return pytree.tree_leaves(tree)


def structure(tree: PyTree) -> pytree.TreeSpec:
    """Return the structure (treespec) of ``tree``."""
    return pytree.tree_structure(tree)


def _paths(tree: PyTree) -> list[str]:
    return [pytree.keystr(path) or "<root>" for path, _ in pytree.tree_leaves_with_path(tree)]


def check_same_structure(trees: Sequence[PyTree], what: str = "trees") -> None:
    """Raise ``ValueError`` naming the first difference if ``trees`` differ in structure.

    Args:
        trees: the pytrees to compare; the first one is the reference.
        what: how the caller names them, used in the message.
    """
    if not trees:
        return
    reference = structure(trees[0])
    for index, tree in enumerate(trees[1:], start=1):
        if structure(tree) != reference:
            expected, found = _paths(trees[0]), _paths(tree)
            missing = [p for p in expected if p not in found]
            extra = [p for p in found if p not in expected]
            detail = []
            if missing:
                detail.append(f"missing leaves {missing[:5]}")
            if extra:
                detail.append(f"unexpected leaves {extra[:5]}")
            if not detail and sorted(expected) == sorted(found):
                detail.append("the same leaves in a different order (dict key order matters)")
            if not detail:
                detail.append(f"containers differ: expected {reference}, found {structure(tree)}")
            raise ValueError(
                f"{what} must share one pytree structure: entry {index} differs from entry 0 "
                f"({'; '.join(detail)})."
            )


def map(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:  # noqa: A001
    """Apply ``fn`` leaf by leaf over ``tree`` and any further trees of the same structure.

    Example:
        >>> params = {"w": torch.ones(2), "b": torch.zeros(1)}
        >>> grads = {"w": torch.tensor([1.0, -1.0]), "b": torch.tensor([2.0])}
        >>> fm.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        {'w': tensor([0.9000, 1.1000]), 'b': tensor([-0.2000])}
    """
    if isinstance(tree, torch.Tensor) and all(isinstance(t, torch.Tensor) for t in rest):
        return fn(tree, *rest)  # single tensors: no traversal
    if rest:
        check_same_structure([tree, *rest], what="fm.tree.map arguments")
        flat = [leaves(t) for t in (tree, *rest)]
        out = [fn(*xs) for xs in zip(*flat, strict=True)]
        return pytree.tree_unflatten(out, structure(tree))
    return pytree.tree_map(fn, tree)


def zeros_like(tree: PyTree) -> PyTree:
    """A tree of zeros with the shapes, dtypes and devices of ``tree``."""
    return pytree.tree_map(torch.zeros_like, tree)


def _check_same_shapes(a: PyTree, b: PyTree, what: str) -> tuple[list, list]:
    """The leaves of ``a`` and ``b``, after checking that they match in structure and shape."""
    check_same_structure([a, b], what=what)
    xs, ys = leaves(a), leaves(b)
    for name, x, y in zip(_paths(a), xs, ys, strict=True):
        if x.shape != y.shape:
            raise ValueError(
                f"{what} must have leaves of one shape (no broadcasting): leaf {name} has shape "
                f"{tuple(x.shape)} in one tree and {tuple(y.shape)} in the other."
            )
    return xs, ys


def _leafwise(fn: Callable[..., torch.Tensor], a: PyTree, b: PyTree, what: str) -> PyTree:
    xs, ys = _check_same_shapes(a, b, what)
    return pytree.tree_unflatten([fn(x, y) for x, y in zip(xs, ys, strict=True)], structure(a))


def add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a + b``; every leaf of ``b`` must have the shape of ``a``'s."""
    return _leafwise(torch.add, a, b, "fm.tree.add arguments")


def sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a - b``; every leaf of ``b`` must have the shape of ``a``'s."""
    return _leafwise(torch.sub, a, b, "fm.tree.sub arguments")


def scale(tree: PyTree, factor: float | torch.Tensor) -> PyTree:
    """Leafwise ``factor * tree``; ``factor`` may be a number or a 0-dim tensor."""
    return pytree.tree_map(lambda x: x * factor, tree)


def dot(a: PyTree, b: PyTree) -> torch.Tensor:
    """Inner product ``Σ_leaves Σ a·b`` as a 0-dim tensor; leaves must match in shape."""
    xs, ys = _check_same_shapes(a, b, "fm.tree.dot arguments")
    products = [torch.sum(x * y) for x, y in zip(xs, ys, strict=True)]
    return torch.stack(products).sum()


def norm(tree: PyTree) -> torch.Tensor:
    """Global L2 norm ``sqrt(Σ_leaves ||x||²)`` as a 0-dim tensor (0 for an empty tree)."""
    xs = leaves(tree)
    if not xs:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in xs]))


def size(tree: PyTree) -> int:
    """Total number of scalars in all leaves."""
    return builtins.sum(x.numel() for x in leaves(tree))


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack same-structure trees along a new leading axis: K trees -> one tree of ``(K, ...)``.

    Raises:
        ValueError: if ``trees`` is empty, the structures differ, or a leaf's shape differs
            between trees (the message names the leaf).
    """
    if len(trees) == 0:
        raise ValueError("fm.tree.stack needs at least one tree; got an empty sequence.")
    check_same_structure(trees, what="fm.tree.stack inputs")
    flat = [leaves(t) for t in trees]
    names = _paths(trees[0])
    out = []
    for name, group in zip(names, zip(*flat, strict=True), strict=True):
        shapes = {tuple(x.shape) for x in group}
        if len(shapes) > 1:
            raise ValueError(
                f"fm.tree.stack: leaf {name} must have one shape in every tree; "
                f"found shapes {sorted(shapes)}."
            )
        out.append(torch.stack(group))
    return pytree.tree_unflatten(out, structure(trees[0]))


def select(mask: torch.Tensor, new: PyTree, old: PyTree) -> PyTree:
    """Member-wise ``new[k] if mask[k] else old[k]`` over two stacked trees, ``mask (K,)``
    bool (0-dim for unstacked trees: the whole tree)."""

    def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        flag = mask.reshape(*mask.shape, *[1] * (a.dim() - mask.dim())).to(a.device)
        return torch.where(flag, a, b.to(a.dtype))

    return map(pick, new, old)


def unstack(tree: PyTree) -> list[PyTree]:
    """Split a stacked tree along its leading axis: one tree of ``(K, ...)`` -> K trees."""
    xs = leaves(tree)
    if not xs:
        raise ValueError("fm.tree.unstack needs a tree with at least one leaf.")
    sizes = {x.shape[0] if x.dim() > 0 else None for x in xs}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "fm.tree.unstack: every leaf must have the same leading (member) axis; "
            f"found leading shapes {[tuple(x.shape[:1]) for x in xs]} for leaves {_paths(tree)}."
        )
    spec = structure(tree)
    members = zip(*[x.unbind(0) for x in xs], strict=True)
    return [pytree.tree_unflatten(list(group), spec) for group in members]


class _Unravel:
    """Inverse of :func:`ravel`: a vector of ``size`` scalars back to the original tree."""

    def __init__(self, spec: pytree.TreeSpec, shapes: list[torch.Size], dtypes: list) -> None:
        self.spec, self.shapes, self.dtypes = spec, shapes, dtypes
        self.numels = [int(torch.Size(s).numel()) for s in shapes]
        self.size = builtins.sum(self.numels)

    def __call__(self, flat: torch.Tensor) -> PyTree:
        if flat.dim() != 1 or flat.shape[0] != self.size:
            raise ValueError(
                f"unravel expects a vector of shape ({self.size},); got shape {tuple(flat.shape)}."
            )
        pieces = torch.split(flat, self.numels)
        out = [
            p.reshape(s).to(d) for p, s, d in zip(pieces, self.shapes, self.dtypes, strict=True)
        ]
        return pytree.tree_unflatten(out, self.spec)


def ravel(tree: PyTree) -> tuple[torch.Tensor, Callable[[torch.Tensor], PyTree]]:
    """Flatten a tree into one vector and return it with the inverse function.

    Leaves of mixed floating dtypes are promoted to their common dtype and cast back by the
    inverse.

    Returns:
        ``(flat, unravel)`` where ``flat`` has shape ``(size(tree),)`` and
        ``unravel(flat)`` rebuilds the tree.
    """
    xs = leaves(tree)
    spec = structure(tree)
    if not xs:
        return torch.zeros(0), _Unravel(spec, [], [])
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    flat = torch.cat([x.reshape(-1).to(dtype) for x in xs])
    return flat, _Unravel(spec, [x.shape for x in xs], [x.dtype for x in xs])


def unravel(flat: torch.Tensor, like: PyTree) -> PyTree:
    """Rebuild a tree shaped like ``like`` from a vector (the inverse of :func:`ravel`)."""
    return ravel(like)[1](flat)
