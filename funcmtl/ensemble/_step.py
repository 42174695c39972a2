"""The vectorized ensemble step: K members' forward, backward and update in one pass.

``make_step`` is :func:`funcmtl.train.make_step` under ``torch.func.vmap`` over stacked train
states and per-member keys (``randomness="different"``), so member k computes exactly what a
solo run with key k computes — dropout included. Anything that reduces over parameters
(``clip_by_global_norm``, a global norm metric) therefore reduces per member.

With ``donate=True`` the gradients are still computed under ``vmap``, but a plain
``sgd``/``adam``/``adamw`` (number hyperparameters) is applied to the stacked leaves at once
by torch's fused in-place kernels: their math is elementwise, so this is the same update for
every member, without allocating a fresh copy of every parameter and moment each step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from funcmtl import optim, train

PyTree = Any
EnsembleStep = Callable[[train.TrainState, PyTree, torch.Tensor], tuple[train.TrainState, dict]]


def _vmap(fn: Callable, per_member_batch: bool, chunk_size: int | None) -> Callable:
    return torch.func.vmap(
        fn,
        in_dims=(0, 0 if per_member_batch else None, 0),
        randomness="different",
        chunk_size=chunk_size,
    )


def make_step(
    loss_fn: train.LossFn,
    optimizer: train.Optimizer,
    *,
    per_member_batch: bool = False,
    chunk_size: int | None = None,
    donate: bool = False,
) -> EnsembleStep:
    """Train every member of a stacked ensemble one step, in one vectorized pass.

    Args:
        loss_fn: the single-model loss, ``(params, buffers, batch, key, hparams) -> (loss,
            (buffers, metrics))``, e.g. :func:`funcmtl.train.supervised_loss`.
        optimizer: a transform, or a factory ``hparams -> transform`` for per-member
            hyperparameters stored in the stacked state (a sweep).
        per_member_batch: the batch has a leading member axis (bagging: each member sees
            its own resample); otherwise all members share one batch.
        chunk_size: members per vmap chunk; bounds peak memory at some speed cost.
        donate: reuse the input states' buffers (see the module docstring); the states
            passed in must not be used again.

    Returns:
        ``step(states, batch, keys) -> (states, metrics)`` with ``keys`` ``(K, 2)`` and every
        metric of shape ``(K,)``.
    """
    if not donate:
        return _vmap(train.make_step(loss_fn, optimizer), per_member_batch, chunk_size)

    # Only what the gradient needs crosses the vmap boundary: every leaf that crosses it is
    # flattened and wrapped at each step, and the optimizer state is large.
    gradients = _vmap(
        lambda model, batch, key: train.loss_and_grads(loss_fn, *model, batch, key),
        per_member_batch,
        chunk_size,
    )
    pure_update = torch.func.vmap(
        lambda transform_hparams, grads, opt_state, params: optim.update_params(
            train.resolve_optimizer(optimizer, transform_hparams), grads, opt_state, params
        ),
        chunk_size=chunk_size,
    )

    def step(states: train.TrainState, batch: PyTree, keys: torch.Tensor):
        model = (states.params, states.buffers, states.hparams)
        grads, loss, buffers, metrics = gradients(model, batch, keys)
        fused = (
            isinstance(optimizer, optim.GradientTransformation)
            and optimizer.apply_donated is not None
        )
        if fused:
            params, opt_state = optimizer.apply_donated(states.params, grads, states.opt_state)
        else:
            params, opt_state = pure_update(states.hparams, grads, states.opt_state, states.params)
        new_states = train.TrainState(params, buffers, opt_state, states.step + 1, states.hparams)
        return new_states, {"loss": loss, **metrics}

    return step
