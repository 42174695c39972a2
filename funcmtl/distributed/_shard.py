"""Sharding across ranks: an ensemble's members, or a batch's examples.

An ensemble is embarrassingly parallel: rank r trains members ``shard(K, r, world_size)``
with :func:`funcmtl.ensemble.make_step` and nothing is exchanged until the end, when
:func:`all_gather_members` assembles the full ``(K, ...)`` ensemble on every rank.

Member k is initialised from ``fm.random.split(key, K)[k]``, which depends on k alone (not
on the shard), so :func:`init_shard` gives rank r exactly the members that
``fm.ensemble.init_members(module, key, K)`` gives a single process at those indices, and the
sharded run equals the single-process run member by member.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from funcmtl import random, tree
from funcmtl._functional import init as init_model
from funcmtl.distributed._collectives import all_gather_concat
from funcmtl.distributed._context import Context

__all__ = ["all_gather_members", "init_shard", "shard", "shard_batch", "take_shard"]

PyTree = Any
Params = dict[str, torch.Tensor]


def shard(count: int, rank: int, world_size: int) -> range:
    """The contiguous block of ``range(count)`` that ``rank`` owns, sizes as even as possible.

    The first ``count % world_size`` ranks get one item more; every item is owned by exactly
    one rank, in rank order: ``shard(5, r, 2)`` is ``range(0, 3)``, then ``range(3, 5)``.

    Args:
        count: members of an ensemble, or examples of a batch; at least ``world_size``, so
            that no rank is left without work.
    """
    for name, value in (("count", count), ("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{name}` must be an int; got {value!r}.")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"`rank` must be in [0, world_size) with world_size >= 1; got rank={rank}, "
            f"world_size={world_size}."
        )
    if count < world_size:
        raise ValueError(
            f"cannot shard {count} items over {world_size} ranks: every rank needs at least "
            f"one; use at most {count} processes or more items."
        )
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def _leading_size(stacked: PyTree, what: str) -> int:
    sizes = {x.shape[0] if x.dim() else None for x in tree.leaves(stacked)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"`{what}` must have one leading axis shared by every leaf; found leading sizes "
            f"{sorted(map(str, sizes))}."
        )
    return int(sizes.pop())


def take_shard(stacked: PyTree, members: range) -> PyTree:
    """The members ``members`` of a full stacked pytree (every leaf ``(K, ...)``).

    Loading a checkpoint of the whole ensemble on rank r:
    ``take_shard(full_states, shard(K, r, world_size))``; and ``take_shard(
    fm.random.split(key, K), members)`` are the global members' keys.
    """
    if not isinstance(members, range) or members.step != 1:
        raise ValueError(f"`members` must be a contiguous range (from `shard`); got {members!r}.")
    count = _leading_size(stacked, "stacked")
    if not 0 <= members.start < members.stop <= count:
        raise ValueError(
            f"`members` must be a non-empty range inside [0, {count}); got {members!r}."
        )
    return tree.map(lambda x: x[members.start : members.stop], stacked)


def init_shard(
    module: nn.Module,
    key: torch.Tensor,
    num_members: int,
    members: range,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Params, Params]:
    """Initialise only the members ``members`` of a ``num_members``-member ensemble.

    Equal to ``take_shard(fm.ensemble.init_members(module, key, num_members), members)``
    without creating the other ranks' members.

    Returns:
        ``(params, buffers)`` with leaves ``(len(members), *leaf_shape)``.
    """
    keys = take_shard(random.split(key, num_members), members)
    states = [init_model(module, k, device=device, dtype=dtype) for k in keys]
    return tree.stack([p for p, _ in states]), tree.stack([b for _, b in states])


def all_gather_members(stacked: PyTree, ctx: Context, num_members: int) -> PyTree:
    """The full ensemble ``(num_members, ...)`` on every rank, from each rank's shard.

    Works for any pytree with a leading member axis: train states, parameters, or
    predictions ``(K_r, N, C)`` (gather outputs rather than parameters to evaluate the
    ensemble on rank 0 without moving the weights). In a 1-process world it returns
    ``stacked`` unchanged.

    Args:
        stacked: this rank's members, every leaf ``(len(shard(num_members, rank, W)), ...)``.
    """
    sizes = [len(shard(num_members, r, ctx.world_size)) for r in range(ctx.world_size)]
    if tree.leaves(stacked) and _leading_size(stacked, "stacked") != sizes[ctx.rank]:
        raise ValueError(
            f"`stacked` must hold rank {ctx.rank}'s {sizes[ctx.rank]} members of "
            f"{num_members}; its leading axis is {_leading_size(stacked, 'stacked')}."
        )
    return all_gather_concat(stacked, ctx, sizes)


def shard_batch(batch: PyTree, ctx: Context) -> PyTree:
    """This rank's contiguous slice of a batch's leading example axis.

    Every rank draws the same global batch (the same data key) and keeps its slice, so the
    ranks' slices together are exactly the batch a single process would use.
    """
    if ctx.world_size == 1:
        return batch
    count = _leading_size(batch, "batch")
    if count < ctx.world_size:
        raise ValueError(
            f"a batch of {count} examples cannot be split over {ctx.world_size} ranks: every "
            "batch, the last one included, needs at least one example per rank."
        )
    mine = shard(count, ctx.rank, ctx.world_size)
    return tree.map(lambda x: x[mine.start : mine.stop], batch)
