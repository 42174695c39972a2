"""The functional training loop: a train-state pytree and a pure ``step``.

``step(state, batch, key) -> (state, metrics)`` is a pure function: no module, optimizer or
generator is mutated, so the same step function is the single-model trainer, the ensemble
trainer (``vmap(step, randomness="different")`` over stacked states and keys) and a candidate
for ``torch.compile``. :func:`fit` is the eager driver around it: epochs, key-driven
shuffling, evaluation, early stopping and a kept best state.

Example:
    >>> net = nn.Linear(4, 3)
    >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> apply, _, _ = fm.functional(net)
    >>> params, buffers = fm.init(net, fm.random.key(0))
    >>> opt = fm.optim.adam(1e-3)
    >>> step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    >>> state = fm.train.init_state(params, buffers, opt)
    >>> state, metrics = step(state, (x, y), fm.random.key(1))
    >>> metrics
    {'loss': tensor(...)}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from funcmtl import data as data_lib
from funcmtl import optim, random, tree
from funcmtl._early_stopping import EarlyStopping
from funcmtl._means import MetricMeans

PyTree = Any
Params = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]
Hparams = dict[str, torch.Tensor]
LossFn = Callable[
    [Params, Params, PyTree, torch.Tensor, Hparams],
    tuple[torch.Tensor, tuple[Params, Metrics]],
]
Optimizer = optim.GradientTransformation | Callable[[Hparams], optim.GradientTransformation]
Step = Callable[[Any, PyTree, torch.Tensor], tuple[Any, Metrics]]


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, so it stacks, vmaps and checkpoints."""

    params: Params
    buffers: Params
    opt_state: PyTree
    step: torch.Tensor  # shape=(), int64: number of updates applied
    hparams: Hparams = {}  # 0-dim tensors, e.g. a per-member learning rate


def resolve_optimizer(optimizer: Optimizer, hparams: Hparams) -> optim.GradientTransformation:
    """The transform itself, or the one a factory builds from the state's hyperparameters.

    A factory ``hparams -> GradientTransformation`` lets hyperparameters live in the train
    state, so that ``vmap`` over stacked states is a sweep::

        opt = lambda hp: fm.optim.adam(hp["learning_rate"])
    """
    if isinstance(optimizer, optim.GradientTransformation):
        return optimizer
    if callable(optimizer):
        return optimizer(hparams)
    raise ValueError(
        "`optimizer` must be a GradientTransformation or a function hparams -> "
        f"GradientTransformation; got {type(optimizer).__name__}."
    )


def init_state(
    params: Params,
    buffers: Params,
    optimizer: Optimizer,
    hparams: Hparams | None = None,
) -> TrainState:
    """A fresh train state at step 0.

    Args:
        hparams: per-run hyperparameters as numbers or 0-dim tensors (stored as tensors), read
            by an optimizer factory and by the loss (``dropout_rate``).
    """
    hparams = {name: torch.as_tensor(value) for name, value in (hparams or {}).items()}
    opt_state = resolve_optimizer(optimizer, hparams).init(params)
    return TrainState(params, buffers, opt_state, torch.zeros((), dtype=torch.int64), hparams)


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


def predict(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    inputs: PyTree,
    *,
    batch_size: int = 1024,
    example_axis: int = 0,
) -> Any:
    """Eval-mode outputs for all of ``inputs``, computed in batches and concatenated.

    Outputs may be a tensor, a dict of tensors (multi-task heads) or a list/tuple of them;
    ``example_axis`` is where their batch axis is (1 for an ensemble's ``(K, N, ...)``).
    """
    chunks = [apply(params, buffers, x)[0] for x in data_lib.batches(inputs, batch_size)]
    return tree.map(lambda *parts: torch.cat(parts, dim=example_axis), *chunks)


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
    members: int | None = None,
    member_indices: torch.Tensor | None = None,
) -> FitResult:
    """Train for up to ``epochs`` epochs with early stopping on ``evaluate_fn``'s ``monitor``.

    Randomness is a pure function of ``key``: with ``k_data, k_step = split(key)``, epoch
    ``e`` is shuffled with ``fold_in(k_data, e)`` and update ``s`` gets the key
    ``fold_in(k_step, s)`` (dropout). For an ensemble (``members=K``, a step from
    :func:`funcmtl.ensemble.make_step` and stacked states) member k's update key is
    ``fold_in(split(k_step, K)[k], s)`` and all members share the data order.

    Args:
        step: from :func:`make_step` (or the ensemble's, with ``members``).
        state: the initial :class:`TrainState` (stacked for an ensemble); not modified.
        train_data: pytree with a leading example axis, e.g. ``(x, y)``.
        evaluate_fn: ``state -> {name: value}`` run after every epoch (e.g. validation).
        monitor: the key of ``evaluate_fn``'s result (or a train metric) to early-stop on.
        patience: evaluations without improvement before stopping; ``None`` never stops.
        log: called with each epoch's row (train metrics averaged over batches and members;
            a task metric skips the batches where it is ``NaN``, i.e. not measured).
        members: train a stacked ensemble of this many members.
        member_indices: ``(K, n)`` per-member example indices (bagging, see
            :func:`funcmtl.data.bootstrap`); needs a step built with ``per_member_batch``.
    """
    random.check_key(key)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer; got {epochs!r}.")
    data_key, step_key = random.split(key)
    if members is None:
        def keys_at(count: torch.Tensor) -> torch.Tensor:
            return random.fold_in(step_key, count)
    else:
        member_keys = random.split(step_key, members)

        def keys_at(count: torch.Tensor) -> torch.Tensor:
            return torch.func.vmap(random.fold_in)(member_keys, count)

    stopper = EarlyStopping(patience if patience is not None else epochs + 1, mode=mode)
    # Copies: a donating step may overwrite the buffers of the states it is given.
    state = tree.map(torch.clone, state)
    best_state, history = tree.map(torch.clone, state), []
    for epoch in range(epochs):
        means = MetricMeans()
        for batch in data_lib.batches(
            train_data, batch_size, key=data_key, epoch=epoch, member_indices=member_indices
        ):
            state, metrics = step(state, batch, keys_at(state.step))
            means.add(metrics)
        row = {"epoch": float(epoch)}
        row.update({f"train_{n}": v for n, v in means.result().items()})
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
            best_state = tree.map(torch.clone, state)
        if stopper.should_stop:
            break
    return FitResult(state, best_state, history)
