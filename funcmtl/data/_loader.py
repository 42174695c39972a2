"""A key-driven minibatch loader over in-memory pytrees of tensors.

A dataset is any pytree whose leaves share a leading example axis ``N``, e.g.
``(x, {"left": y1, "sum": y2})``. The order of epoch ``e`` is ``permutation(fold_in(key, e))``:
a pure function of the key and the epoch, so a resumed run sees exactly the batches an
uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from funcmtl import random, tree

PyTree = Any


def num_examples(data: PyTree) -> int:
    """The common leading size ``N`` of every leaf of ``data``."""
    leaves = tree.leaves(data)
    if not leaves:
        raise ValueError("`data` must hold at least one tensor; got an empty pytree.")
    sizes = {x.shape[0] if x.dim() else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        found = [tuple(x.shape) for x in leaves]
        raise ValueError(
            f"every tensor in `data` must share the leading example axis N; got shapes {found}."
        )
    return int(sizes.pop())


def take(data: PyTree, indices: torch.Tensor) -> PyTree:
    """Select examples ``indices`` (int64 ``(n,)``) from every leaf."""
    return tree.map(lambda x: x.index_select(0, indices.to(x.device)), data)


def bootstrap(key: torch.Tensor, members: int, n: int) -> torch.Tensor:
    """Bagging: for each of ``members`` members, ``n`` indices drawn with replacement.

    Row ``k`` is ``randint(split(key, members)[k], (n,), 0, n)``, so member k's resample can
    be rebuilt alone. Returns int64 ``(members, n)``; pass it to :func:`batches` as
    ``member_indices``.

    References:
        Breiman, `Bagging Predictors <https://doi.org/10.1007/BF00058655>`_, 1996.
    """
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"`members` must be a positive integer; got {members!r}.")
    return torch.stack([random.randint(k, (n,), 0, n) for k in random.split(key, members)])


def batches(
    data: PyTree,
    batch_size: int,
    *,
    key: torch.Tensor | None = None,
    epoch: int = 0,
    drop_last: bool = False,
    member_indices: torch.Tensor | None = None,
    start: int = 0,
) -> Iterator[PyTree]:
    """Yield minibatches of ``data``; shuffled from ``fold_in(key, epoch)`` when a key is given.

    Args:
        data: pytree of tensors with leading axis ``N``.
        batch_size: examples per batch (the last one may be smaller unless ``drop_last``).
        key: shuffling key ``(2,)``, or ``(K, 2)``: one order per member, and every batch has
            a leading member axis ``(K, batch, ...)``; ``None`` keeps the stored order.
        epoch: epoch number, folded into the key so every epoch has its own order.
        member_indices: ``(K, n)`` per-member example indices (e.g. :func:`bootstrap`):
            then every batch has a leading member axis, ``(K, batch, ...)``, and member k's
            batch is ``take(take(data, member_indices[k]), positions)``, with positions
            shared by all members unless ``key`` has one order per member — what member k
            alone would see on its own resample.
        start: the index of the first batch to yield (to continue an epoch part-way).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    n = num_examples(data)
    if member_indices is not None:
        if member_indices.dim() != 2 or member_indices.dtype != torch.int64:
            raise ValueError(
                "`member_indices` must be an int64 tensor of shape (members, n); got "
                f"{member_indices.dtype} of shape {tuple(member_indices.shape)}."
            )
        n = member_indices.shape[1]
    if key is None:
        order = torch.arange(n)
    else:
        order = random.permutation(random.fold_in(key, epoch), n)  # (n,) or (K, n)
    if member_indices is not None:
        order = member_indices.gather(1, order.to(member_indices.device).expand_as(member_indices))
    stop = n - n % batch_size if drop_last else n
    for first in range(start * batch_size, stop, batch_size):
        rows = order[..., first : first + batch_size]
        if rows.dim() == 1:
            yield take(data, rows)
        else:  # (K, batch)
            yield tree.map(lambda x, rows=rows: x[rows.to(x.device)], data)


def random_split(
    data: PyTree, fractions: Sequence[float], *, key: torch.Tensor
) -> list[PyTree]:
    """Split ``data`` into disjoint parts of the given fractions, deterministically from ``key``.

    Example:
        >>> data = {"x": torch.arange(10.0), "y": torch.arange(10)}
        >>> train, val, test = fm.data.random_split(data, (0.8, 0.1, 0.1), key=fm.random.key(0))
        >>> train["y"], val["y"], test["y"]
        (tensor([0, 2, 4, 9, 6, 8, 7, 5]), tensor([1]), tensor([3]))
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"`fractions` must be non-negative and sum to 1; got {tuple(fractions)}."
        )
    n = num_examples(data)
    order = random.permutation(key, n)
    bounds = [round(n * sum(fractions[:i])) for i in range(len(fractions) + 1)]
    return [take(data, order[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
