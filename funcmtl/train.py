"""The functional training loop: a train-state pytree and a pure ``step``.

``step(state, batch, key) -> (state, metrics)`` is a pure function: no module, optimizer or
generator is mutated, so the same step function is the single-model trainer, the ensemble
trainer (``vmap(step, randomness="different")`` over stacked states and keys) and a candidate
for ``torch.compile``. :func:`fit` is the eager driver around it: epochs, key-driven
shuffling, evaluation, early stopping and a kept best state.

Example:
    >>> apply, _, _ = fm.functional(net)
    >>> params, buffers = fm.init(net, k_init)
    >>> opt = fm.optim.adam(1e-3)
    >>> step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    >>> state = fm.train.init_state(params, buffers, opt)
    >>> state, metrics = step(state, (x, y), k_step)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from funcmtl import data as data_lib
from funcmtl import optim, random

PyTree = Any
Params = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]
LossFn = Callable[
    [Params, Params, PyTree, torch.Tensor], tuple[torch.Tensor, tuple[Params, Metrics]]
]
Step = Callable[[Any, PyTree, torch.Tensor], tuple[Any, Metrics]]


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, so it stacks, vmaps and checkpoints."""

    params: Params
    buffers: Params
    opt_state: PyTree
    step: torch.Tensor  # shape=(), int64: number of updates applied


def init_state(
    params: Params, buffers: Params, optimizer: optim.GradientTransformation
) -> TrainState:
    """A fresh train state at step 0."""
    return TrainState(params, buffers, optimizer.init(params), torch.zeros((), dtype=torch.int64))


def supervised_loss(
    apply: Callable[..., tuple[Any, Params]],
    loss: Callable[[Any, Any], torch.Tensor],
    metrics: dict[str, Callable[[Any, Any], torch.Tensor]] | None = None,
) -> LossFn:
    """Build ``loss_fn(params, buffers, (x, y), key)`` for a model and a loss on its outputs.

    Args:
        apply: from :func:`funcmtl.functional`.
        loss: ``loss(outputs, y) -> 0-dim tensor``, e.g. ``fm.losses.cross_entropy``.
        metrics: extra training metrics ``{name: fn(outputs, y)}`` reported by the step.
    """

    def loss_fn(params: Params, buffers: Params, batch: PyTree, key: torch.Tensor):
        x, y = batch
        outputs, new_buffers = apply(params, buffers, x, train=True, key=key)
        extra = {name: fn(outputs.detach(), y) for name, fn in (metrics or {}).items()}
        return loss(outputs, y), (new_buffers, extra)

    return loss_fn


def make_step(loss_fn: LossFn, optimizer: optim.GradientTransformation) -> Step:
    """One gradient step of ``loss_fn`` with ``optimizer``, as a pure function.

    Args:
        loss_fn: ``(params, buffers, batch, key) -> (loss, (new_buffers, metrics))``.
        optimizer: a :class:`funcmtl.optim.GradientTransformation`.

    Returns:
        ``step(state, batch, key) -> (new_state, {"loss": ..., **metrics})``.
    """

    def step(state: TrainState, batch: PyTree, key: torch.Tensor) -> tuple[TrainState, Metrics]:
        def objective(params: Params):
            loss, aux = loss_fn(params, state.buffers, batch, key)
            return loss, aux

        grads, (loss, (buffers, metrics)) = torch.func.grad_and_value(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)
        return TrainState(params, buffers, opt_state, state.step + 1), {"loss": loss, **metrics}

    return step


def predict(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    inputs: PyTree,
    *,
    batch_size: int = 1024,
) -> Any:
    """Eval-mode outputs for all of ``inputs``, computed in batches and concatenated."""
    chunks = [
        apply(params, buffers, x)[0]
        for x in data_lib.batches(inputs, batch_size)
    ]
    if isinstance(chunks[0], torch.Tensor):
        return torch.cat(chunks)
    if isinstance(chunks[0], dict):
        return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


def evaluate(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    dataset: tuple[PyTree, PyTree],
    metrics: dict[str, Callable[[Any, Any], torch.Tensor]],
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Metrics of the model on the whole of ``dataset = (x, y)`` (not a mean of batch means,
    so F1, R² and ECE are exact)."""
    x, y = dataset
    outputs = predict(apply, params, buffers, x, batch_size=batch_size)
    return {name: float(fn(outputs, y)) for name, fn in metrics.items()}


class EarlyStopping(NamedTuple):
    """Stop when a monitored value has not improved for ``patience`` evaluations.

    Immutable: :meth:`update` returns the next value. ``mode="min"`` for losses, ``"max"`` for
    accuracies. An improvement must beat the best by more than ``min_delta``.
    """

    patience: int
    mode: str = "min"
    min_delta: float = 0.0
    best: float = math.nan
    best_index: int = -1
    index: int = -1

    def update(self, value: float) -> EarlyStopping:
        if self.mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'; got {self.mode!r}.")
        sign = 1.0 if self.mode == "min" else -1.0
        index = self.index + 1
        improved = math.isnan(self.best) or sign * (self.best - value) > self.min_delta
        if improved and math.isfinite(value):
            return self._replace(best=value, best_index=index, index=index)
        return self._replace(index=index)

    @property
    def improved(self) -> bool:
        """Whether the latest update was the best so far."""
        return self.best_index == self.index

    @property
    def should_stop(self) -> bool:
        return self.index - self.best_index >= self.patience


class FitResult(NamedTuple):
    state: TrainState  # the last state
    best_state: TrainState  # the state at the best evaluation (the last one without eval)
    history: list[dict[str, float]]  # one row per epoch: train means and eval metrics


def fit(
    step: Step,
    state: TrainState,
    train_data: PyTree,
    *,
    key: torch.Tensor,
    batch_size: int,
    epochs: int,
    evaluate_fn: Callable[[TrainState], dict[str, float]] | None = None,
    monitor: str = "loss",
    mode: str = "min",
    patience: int | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train for up to ``epochs`` epochs with early stopping on ``evaluate_fn``'s ``monitor``.

    Randomness is a pure function of ``key``: epoch ``e`` is shuffled with
    ``fold_in(k_data, e)``, update ``s`` gets ``fold_in(k_step, s)`` (dropout), where
    ``k_data, k_step = split(key)``.

    Args:
        step: from :func:`make_step`.
        state: the initial :class:`TrainState`.
        train_data: pytree with a leading example axis, e.g. ``(x, y)``.
        evaluate_fn: ``state -> {name: value}`` run after every epoch (e.g. validation).
        monitor: the key of ``evaluate_fn``'s result (or a train metric) to early-stop on.
        patience: evaluations without improvement before stopping; ``None`` never stops.
        log: called with each epoch's row.
    """
    random.check_key(key)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer; got {epochs!r}.")
    data_key, step_key = random.split(key)
    stopper = EarlyStopping(patience if patience is not None else epochs + 1, mode=mode)
    best_state, history = state, []
    for epoch in range(epochs):
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for batch in data_lib.batches(train_data, batch_size, key=data_key, epoch=epoch):
            state, metrics = step(state, batch, random.fold_in(step_key, state.step))
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            count += 1
        row = {"epoch": float(epoch), **{f"train_{n}": float(v) / count for n, v in sums.items()}}
        if evaluate_fn is not None:
            row.update(evaluate_fn(state))
        if log is not None:
            log(row)
        history.append(row)
        value = row.get(monitor, row.get(f"train_{monitor}"))
        if value is None:
            raise ValueError(
                f"`monitor` must name a logged value; got {monitor!r}, available {sorted(row)}."
            )
        stopper = stopper.update(value)
        if stopper.improved:
            best_state = state
        if stopper.should_stop:
            break
    return FitResult(state, best_state, history)
