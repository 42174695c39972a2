"""The plain data-parallel step for one model: average the ranks' gradients, then update.

Rank r computes the gradient of its shard's mean loss; the batch-size-weighted mean over
ranks is exactly the full batch's mean gradient (for losses that are means over examples),
so every rank applies the same update as a single process on the whole batch. Loss, metrics
and floating buffers (BatchNorm running statistics) are averaged the same way, in the same
message as the gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from funcmtl import optim, random, train, tree
from funcmtl.distributed._collectives import all_reduce_mean
from funcmtl.distributed._context import Context
from funcmtl.distributed._shard import shard_batch

__all__ = ["make_step"]

PyTree = Any


def make_step(
    loss_fn: train.LossFn,
    optimizer: train.Optimizer,
    ctx: Context,
    *,
    split_batch: bool = True,
    donate: bool = False,
) -> train.Step:
    """:func:`funcmtl.train.make_step` over ``ctx``'s ranks: one all-reduce per step.

    Args:
        loss_fn: ``(params, buffers, batch, key, hparams) -> (loss, (buffers, metrics))``
            whose loss is a mean over the batch's examples.
        optimizer: a transform, or a factory ``hparams -> transform``.
        ctx: from :func:`funcmtl.distributed.init`; a 1-process world gives the plain step.
        split_batch: the step receives the global batch and keeps this rank's contiguous
            slice; ``False`` when each rank loads its own examples.
        donate: see :func:`funcmtl.train.make_step`.

    Returns:
        ``step(state, batch, key) -> (state, metrics)``, identical on every rank. Dropout
        masks come from ``key`` folded with the rank, so they differ between ranks.
    """
    if ctx.group is None:
        return train.make_step(loss_fn, optimizer, donate=donate)

    def step(state: train.TrainState, batch: PyTree, key: torch.Tensor):
        if split_batch:
            batch = shard_batch(batch, ctx)
        grads, loss, buffers, metrics = train.loss_and_grads(
            loss_fn, state.params, state.buffers, state.hparams, batch,
            random.fold_in(key, ctx.rank),
        )
        size = tree.leaves(batch)[0].shape[0]
        grads, loss, buffers, metrics = all_reduce_mean(
            (grads, loss, buffers, metrics), ctx, weight=float(size)
        )
        transform = train.resolve_optimizer(optimizer, state.hparams)
        params, opt_state = optim.update_params(
            transform, grads, state.opt_state, state.params, donate=donate
        )
        new_state = train.TrainState(params, buffers, opt_state, state.step + 1, state.hparams)
        return new_state, {"loss": loss, **metrics}

    return step
