"""A weighting's whole ``update`` on the members' plain batch, for ``vmap`` on a CPU.

Under ``vmap`` every op of ``update`` — the Gramian, the finiteness masks, the solver's
bookkeeping, ``Jᵀw`` — pays functorch's batching on top of its own (~0.8 ms for K=32 tiny
problems, more than the solves). A weighting that can compute the weights of a plain batch of
Gramians ``(K, T, T) -> (K, T)`` at once (MGDA, UPGrad, DualProj: stateless, keyless) hands
:func:`member_update` that function: the task gradients' leaves then go through one
``autograd.Function`` vmap rule (:func:`~funcmtl.aggregators._plain_batch.plain_batch`) that
computes ``G = J Jᵀ`` by one batched product per leaf, the weights, and ``Jᵀw`` on the plain
tensors. Members with a non-finite Gramian get NaN directions, as elsewhere.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl.aggregators._plain_batch import one_vmap_level, plain_batch, traced_on_cpu

BatchedWeights = Callable[[Tensor], Tensor]  # (K, T, T) float64 -> (K, T) float64


def sum_of_products(blocks: list[Tensor]) -> Tensor:
    """``Σ B Bᵀ`` over blocks ``(…, T, P_i)`` (no ``0 +`` of the built-in ``sum``: one op
    less per call)."""
    return functools.reduce(operator.add, (b @ b.mT for b in blocks))


def member_update(batched: BatchedWeights) -> Callable[[Any], Any | None]:
    """``direction_or_none(task_grads)``: the direction computed on the members' plain batch
    when ``task_grads`` is traced by ``vmap`` on a CPU, ``None`` otherwise."""

    def directions(*leaves: Tensor) -> Tensor:
        """Plain leaves ``(K, T, ...)`` -> the members' flattened directions ``(K, Σ P)``."""
        blocks = [x.reshape(*x.shape[:2], -1) for x in leaves]
        accumulate = torch.promote_types(blocks[0].dtype, torch.float32)
        blocks = [b.to(accumulate) for b in blocks]
        gram = sum_of_products(blocks).to(torch.float64)
        finite = torch.isfinite(gram).flatten(1).all(1)
        if not bool(finite.all()):
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
            gram = torch.where(finite[:, None, None], gram, eye)
        w = torch.where(finite[:, None], batched(gram), torch.nan)
        return torch.cat([(w.to(b.dtype)[:, None, :] @ b)[:, 0] for b in blocks], dim=-1)

    rule = plain_batch(directions)

    def update(task_grads: Any) -> Any | None:
        leaves = tree.leaves(task_grads)
        if not (traced_on_cpu(*leaves) and one_vmap_level(*leaves)):
            return None  # (nested transforms: the per-op path)
        flat = rule(*leaves)
        sizes = [x[0].numel() for x in leaves]
        parts = [p.reshape(x.shape[1:]) for p, x in zip(flat.split(sizes), leaves, strict=True)]
        return tree.structure(task_grads).unflatten(parts)

    return update
