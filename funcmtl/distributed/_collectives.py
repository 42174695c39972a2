"""Collectives over whole pytrees: one message per dtype, not one per leaf.

Each function flattens the leaves of a tree into one buffer per dtype, runs a single
``torch.distributed`` collective on it and unflattens the result, so a model's gradients
cost one all-reduce however many tensors it has. In a 1-process world (``ctx.group is
None``) they return their input. They run eagerly: they cannot be called under ``vmap``.

Gloo communicates CPU tensors and NCCL CUDA tensors: buffers move to the backend's device
for the collective and each leaf comes back to its own device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.utils._pytree as pytree

from funcmtl.distributed._context import Context, DistributedError, _first_line

__all__ = ["all_gather_concat", "all_reduce_mean", "all_reduce_sum", "barrier", "broadcast"]

PyTree = Any


def _comm_device(ctx: Context) -> torch.device:
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def _run(ctx: Context, what: str, collective: Callable[..., Any], *args: Any) -> None:
    """Run one collective, turning a peer's failure into one clear error."""
    try:
        collective(*args, group=ctx.group)
    except RuntimeError as err:  # DistBackendError and gloo's errors are RuntimeErrors
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: {what} failed; another rank exited, "
            f"crashed or did not arrive within {ctx.timeout_s:g} s: {_first_line(err)}"
        ) from err


def _by_dtype(leaves: Sequence[torch.Tensor]) -> dict[torch.dtype, list[int]]:
    groups: dict[torch.dtype, list[int]] = {}
    for index, leaf in enumerate(leaves):
        groups.setdefault(leaf.dtype, []).append(index)
    return groups


def _check_leaves(leaves: Sequence[Any], what: str) -> None:
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            found = type(leaf).__name__
            raise ValueError(f"`{what}` must be a pytree of tensors; found a {found}.")


def all_reduce_sum(tree: PyTree, ctx: Context) -> PyTree:
    """Every leaf summed over the ranks (the same result on every rank).

    Args:
        tree: the same structure, shapes and dtypes on every rank; no ``bool`` leaves.
    """
    if ctx.group is None:
        return tree
    leaves, spec = pytree.tree_flatten(tree)
    _check_leaves(leaves, "tree")
    if any(leaf.dtype == torch.bool for leaf in leaves):
        raise ValueError("`tree` must not have bool leaves: a sum of booleans is not a boolean.")
    out = list(leaves)
    device = _comm_device(ctx)
    for dtype, indices in _by_dtype(leaves).items():
        flat = torch.cat([leaves[i].detach().reshape(-1).to(device) for i in indices])
        _run(ctx, f"all_reduce of {flat.numel()} {dtype} values", dist.all_reduce, flat)
        sizes = [leaves[i].numel() for i in indices]
        for i, part in zip(indices, flat.split(sizes), strict=True):
            out[i] = part.reshape(leaves[i].shape).to(leaves[i].device)
    return pytree.tree_unflatten(out, spec)


def all_reduce_mean(
    tree: PyTree, ctx: Context, *, weight: float | torch.Tensor = 1.0
) -> PyTree:
    """Floating leaves averaged over the ranks, rank r weighted by ``weight``: ``Σ wᵣ xᵣ / Σ wᵣ``.

    Data-parallel gradients: a rank's gradient is the mean over its shard of the batch, so
    with ``weight`` = the shard's size the result is exactly the full batch's mean gradient
    even when shards differ in size. Integer and bool leaves (step counters, BatchNorm's
    ``num_batches_tracked``) are returned unchanged: they agree on all ranks.

    Args:
        tree: gradients, losses, metrics, buffers: the same structure on every rank.
        weight: this rank's weight, e.g. its number of examples (``> 0`` on some rank).
    """
    if ctx.group is None:
        return tree
    leaves, spec = pytree.tree_flatten(tree)
    _check_leaves(leaves, "tree")
    floating = [i for i, leaf in enumerate(leaves) if leaf.is_floating_point()]
    if not floating:
        return tree
    # One weight per dtype rides in the same message as that dtype's leaves.
    dtypes = list(dict.fromkeys(leaves[i].dtype for i in floating))
    weights = [torch.as_tensor(weight, dtype=dtype) for dtype in dtypes]
    position = {dtype: d for d, dtype in enumerate(dtypes)}
    scaled = [leaves[i] * weights[position[leaves[i].dtype]].to(leaves[i].device) for i in floating]
    summed, totals = all_reduce_sum((scaled, weights), ctx)
    out = list(leaves)
    for i, value in zip(floating, summed, strict=True):
        out[i] = value / totals[position[value.dtype]].to(value.device)
    return pytree.tree_unflatten(out, spec)


def all_gather_concat(tree: PyTree, ctx: Context, sizes: Sequence[int]) -> PyTree:
    """Concatenate every leaf's leading axis over the ranks, in rank order.

    Rank r's leaves have leading size ``sizes[r]`` (shards may be uneven: all-gather needs
    equal sizes, so each rank pads to ``max(sizes)`` and the padding is trimmed away).

    Returns:
        the tree with leading size ``sum(sizes)`` on every leaf, the same on every rank.
    """
    leaves, spec = pytree.tree_flatten(tree)
    _check_leaves(leaves, "tree")
    mine = sizes[ctx.rank]
    for leaf in leaves:
        if leaf.dim() == 0 or leaf.shape[0] != mine:
            raise ValueError(
                f"every leaf must have a leading axis of this rank's size {mine}; found a leaf "
                f"of shape {tuple(leaf.shape)}."
            )
    if ctx.group is None:
        return tree
    width, device = max(sizes), _comm_device(ctx)
    out = list(leaves)
    for dtype, indices in _by_dtype(leaves).items():
        rows = torch.cat([leaves[i].detach().reshape(mine, -1).to(device) for i in indices], 1)
        comm_dtype = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool sums
        padded = rows.new_zeros((width, rows.shape[1]), dtype=comm_dtype)
        padded[:mine] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        _run(ctx, f"all_gather of {padded.numel()} {dtype} values", dist.all_gather, parts, padded)
        gathered = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
        gathered = gathered.to(dtype)
        columns = [_row_size(leaves[i]) for i in indices]
        for i, part in zip(indices, gathered.split(columns, dim=1), strict=True):
            shape = (sum(sizes), *leaves[i].shape[1:])
            out[i] = part.reshape(shape).to(leaves[i].device)
    return pytree.tree_unflatten(out, spec)


def _row_size(leaf: torch.Tensor) -> int:
    size = 1
    for s in leaf.shape[1:]:
        size *= s
    return size


def broadcast(tree: PyTree, ctx: Context, *, src: int = 0) -> PyTree:
    """Every leaf as rank ``src`` has it (e.g. parameters loaded only there)."""
    if not isinstance(src, int) or not 0 <= src < ctx.world_size:
        raise ValueError(f"`src` must be a rank in [0, {ctx.world_size}); got {src!r}.")
    if ctx.group is None:
        return tree
    leaves, spec = pytree.tree_flatten(tree)
    _check_leaves(leaves, "tree")
    out = list(leaves)
    device = _comm_device(ctx)
    for dtype, indices in _by_dtype(leaves).items():
        comm_dtype = torch.uint8 if dtype == torch.bool else dtype
        flat = torch.cat([leaves[i].detach().reshape(-1).to(device, comm_dtype) for i in indices])
        _run(ctx, f"broadcast of {flat.numel()} {dtype} values", dist.broadcast, flat, src)
        sizes = [leaves[i].numel() for i in indices]
        for i, part in zip(indices, flat.to(dtype).split(sizes), strict=True):
            out[i] = part.reshape(leaves[i].shape).to(leaves[i].device)
    return pytree.tree_unflatten(out, spec)


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here (e.g. rank 0 has written a checkpoint)."""
    if ctx.group is not None:
        # An all-reduce rather than dist.barrier: the same code on gloo and NCCL, with the
        # group's timeout.
        _run(ctx, "barrier", dist.all_reduce, torch.zeros(1, device=_comm_device(ctx)))
