"""Per-task gradients: the Jacobian of the task-loss vector, exactly, in one vectorized pass.

Three ways to get what an aggregator needs, from most to least information:

- **exact** — ``J`` ``(T, P)`` with respect to the shared parameters: ``vjp`` of the loss
  vector (or of the shared encoder), ``vmap``-ed over one cotangent per task;
- **Gramian** — only ``G = J Jᵀ`` ``(T, T)``, accumulated one parameter chunk at a time so
  at most one chunk of ``J`` exists at once; then weights from ``G`` and a single backward;
- **representation** — gradients with respect to the shared representation ``z`` instead
  of the shared parameters (MGDA-UB, Sener & Koltun 2018; LibMTL's ``rep_grad``): ``T``
  small head backward passes and one encoder backward, close to the cost of the summed loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl.aggregators._base import gramian

PyTree = Any
Params = dict[str, Tensor]


def _split_params(params: Params, shared: Sequence[str] | None) -> tuple[Params, Params]:
    if shared is None:
        return dict(params), {}
    unknown = [name for name in shared if name not in params]
    if unknown:
        raise ValueError(
            f"`shared` must name entries of `params`; unknown {unknown[:5]}, "
            f"known {list(params)[:8]}."
        )
    chosen = set(shared)
    return (
        {n: v for n, v in params.items() if n in chosen},
        {n: v for n, v in params.items() if n not in chosen},
    )


def task_jacobian(
    losses_fn: Callable[[Params], Tensor | tuple[Tensor, Any]],
    params: Params,
    *,
    shared: Sequence[str] | None = None,
    task_chunk_size: int | None = None,
    has_aux: bool = False,
):
    """The exact per-task Jacobian of ``losses_fn(params) -> losses (T,)``.

    One forward pass and one backward ``vmap``-ed over the ``T`` one-hot cotangents.

    Args:
        losses_fn: ``params -> losses (T,)`` (or ``(losses, aux)`` with ``has_aux``).
        params: ``dict[str, Tensor]``.
        shared: names of the parameters whose per-task gradients are wanted (default: all).
            The others are taken to belong to single tasks (heads): they get the gradient
            of the summed loss, which for a task-specific parameter is its own task's.
        task_chunk_size: tasks per vmap chunk, bounding memory to that many rows of ``J``.

    Returns:
        ``(losses (T,), jacobian, other_grads[, aux])``: ``jacobian`` has the shared names,
        each leaf with a leading task axis ``(T, *shape)``; ``other_grads`` the rest.
    """
    shared_params, other_params = _split_params(params, shared)

    def split_fn(sp: Params, op: Params):
        return losses_fn({**sp, **op})

    out = torch.func.vjp(split_fn, shared_params, other_params, has_aux=has_aux)
    losses, vjp_fn = out[0], out[1]
    if losses.dim() != 1:
        raise ValueError(
            f"`losses_fn` must return a loss vector of shape (T,); got {tuple(losses.shape)}."
        )
    eye = torch.eye(losses.shape[0], dtype=losses.dtype, device=losses.device)
    jacobian, other_rows = torch.func.vmap(vjp_fn, chunk_size=task_chunk_size)(eye)
    other_grads = tree.map(lambda rows: rows.sum(0), other_rows)
    if has_aux:
        return losses, jacobian, other_grads, out[2]
    return losses, jacobian, other_grads


def parameter_chunks(params: Params, count: int = 2) -> list[list[str]]:
    """Split parameter names into ``count`` contiguous groups of about equal size.

    A module's parameters (``a.b.weight``, ``a.b.bias``) stay together, and groups follow
    the order of ``params`` (forward order for a ``Sequential``). Contiguous groups keep the
    Gramian path's extra work small: a chunk's backward only redoes the input gradients of
    the layers after it, and the last chunk redoes none.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer; got {count!r}.")
    modules: dict[str, list[str]] = {}
    for name in params:
        modules.setdefault(name.rpartition(".")[0], []).append(name)
    sizes = [sum(params[n].numel() for n in names) for names in modules.values()]
    target = sum(sizes) / count
    chunks: list[list[str]] = [[]]
    filled = 0
    for names, size in zip(modules.values(), sizes, strict=True):
        if chunks[-1] and filled + size / 2 > target * len(chunks) and len(chunks) < count:
            chunks.append([])
        chunks[-1].extend(names)
        filled += size
    return chunks


def chunked_gramian(
    encode: Callable[[Params], Any],
    shared_params: Params,
    cotangents: PyTree,
    *,
    chunks: Sequence[Sequence[str]] | None = None,
    task_chunk_size: int | None = None,
) -> Tensor:
    """``G = J Jᵀ`` of ``J = (∂z/∂θ)ᵀ`` applied to ``T`` cotangents, one chunk at a time.

    For each chunk of parameters, a ``vjp`` of ``encode`` with respect to that chunk only
    (the rest held fixed, so autograd skips their weight gradients) gives the rows of ``J``
    for that chunk, ``(T, P_chunk)``; their Gramian is added to ``G`` and they are dropped.
    Peak memory is one chunk of ``J``; the extra cost is one encoder forward per chunk and
    the input-gradient work above each chunk.

    Args:
        encode: ``shared_params -> z`` (deterministic: the same key for every chunk).
        shared_params: the parameters of ``encode``.
        cotangents: ``∂Lₜ/∂z`` for every task, leaves ``(T, *z_shape)``.
        chunks: groups of parameter names (default: :func:`parameter_chunks`, two halves).
        task_chunk_size: tasks per vmap chunk of the VJPs.
    """
    chunks = parameter_chunks(shared_params) if chunks is None else chunks
    total = None
    for names in chunks:
        chunk = {n: shared_params[n] for n in names}
        fixed = {n: v for n, v in shared_params.items() if n not in chunk}
        _, vjp_fn = torch.func.vjp(lambda c, fixed=fixed: encode({**fixed, **c}), chunk)
        (rows,) = torch.func.vmap(vjp_fn, chunk_size=task_chunk_size)(cotangents)
        block = gramian(rows)
        total = block if total is None else total + block
    return total
