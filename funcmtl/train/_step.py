"""The pure gradient step: ``step(state, batch, key) -> (state, metrics)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from funcmtl import optim
from funcmtl.train._state import (
    Hparams,
    LossFn,
    Metrics,
    Optimizer,
    Params,
    PyTree,
    Step,
    TrainState,
    resolve_optimizer,
)


def supervised_loss(
    apply: Callable[..., tuple[Any, Params]],
    loss: Callable[[Any, Any], torch.Tensor],
    metrics: dict[str, Callable[[Any, Any], torch.Tensor]] | None = None,
) -> LossFn:
    """Build ``loss_fn(params, buffers, (x, y), key, hparams)`` for a model and a loss.

    ``hparams["dropout_rate"]``, when present, overrides every dropout layer's rate.

    Args:
        apply: from :func:`funcmtl.functional`.
        loss: ``loss(outputs, y) -> 0-dim tensor``, e.g. ``fm.losses.cross_entropy``.
        metrics: extra training metrics ``{name: fn(outputs, y)}`` reported by the step.
    """

    def loss_fn(
        params: Params, buffers: Params, batch: PyTree, key: torch.Tensor, hparams: Hparams
    ):
        x, y = batch
        outputs, new_buffers = apply(
            params, buffers, x, train=True, key=key, dropout_rate=hparams.get("dropout_rate")
        )
        extra = {name: fn(outputs.detach(), y) for name, fn in (metrics or {}).items()}
        return loss(outputs, y), (new_buffers, extra)

    return loss_fn


def loss_and_grads(
    loss_fn: LossFn,
    params: Params,
    buffers: Params,
    hparams: Hparams,
    batch: PyTree,
    key: torch.Tensor,
) -> tuple[Params, torch.Tensor, Params, Metrics]:
    """``(grads, loss, new_buffers, metrics)`` of ``loss_fn`` at ``params`` (pure)."""

    def objective(p: Params):
        return loss_fn(p, buffers, batch, key, hparams)

    grads, (loss, (new_buffers, metrics)) = torch.func.grad_and_value(objective, has_aux=True)(
        params
    )
    return grads, loss, new_buffers, metrics


def make_step(loss_fn: LossFn, optimizer: Optimizer, *, donate: bool = False) -> Step:
    """One gradient step of ``loss_fn`` with ``optimizer``, as a pure function.

    Args:
        loss_fn: ``(params, buffers, batch, key, hparams) -> (loss, (new_buffers, metrics))``.
        optimizer: a :class:`funcmtl.optim.GradientTransformation`, or a factory
            ``hparams -> GradientTransformation`` (see :func:`resolve_optimizer`).
        donate: let the update reuse the input state's buffers (like JAX's
            ``donate_argnums``): faster on CPU, where fresh large tensors are costly, but the
            state passed in must not be used again. :func:`fit` does this safely.

    Returns:
        ``step(state, batch, key) -> (new_state, {"loss": ..., **metrics})``.
    """

    def step(state: TrainState, batch: PyTree, key: torch.Tensor) -> tuple[TrainState, Metrics]:
        grads, loss, buffers, metrics = loss_and_grads(
            loss_fn, state.params, state.buffers, state.hparams, batch, key
        )
        transform = resolve_optimizer(optimizer, state.hparams)
        params, opt_state = optim.update_params(
            transform, grads, state.opt_state, state.params, donate=donate
        )
        new_state = TrainState(params, buffers, opt_state, state.step + 1, state.hparams)
        return new_state, {"loss": loss, **metrics}

    return step
