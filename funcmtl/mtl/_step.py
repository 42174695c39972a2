"""The multi-task train step: per-task gradients -> loss weighting -> aggregator -> optimizer.

``step(state, batch, key) -> (state, metrics)`` is pure, like the single-task step, so
``vmap`` over stacked :class:`MTLState` trains K multi-task models — each with its own
aggregator state and randomness (PCGrad's task order, GradDrop's masks) — in one pass.

The batch is ``(x, {task: targets})``. For every task ``t`` the step computes the loss
``Lₜ`` and ``∂Lₜ/∂z`` through its own head, lets the loss weighting choose ``wₜ`` (from the
detached losses, and the gradient norms for GradNorm), scales task t's gradients by
``wₜ``, and hands the shared part to the aggregator through one of three gradient paths
(:mod:`funcmtl.mtl._paths`). Head parameters get their own task's (weighted) gradient. The
batch may be spread over processes: a :class:`~funcmtl.mtl._reduction.Reduction` (identity by
default; ``fm.distributed.data_parallel``) turns each process's share into the whole
batch's before aggregation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl import aggregators as aggregators_lib
from funcmtl import optim, random, train, tree
from funcmtl import weightings as weightings_lib
from funcmtl.aggregators._base import Aggregator, combine
from funcmtl.mtl import _paths
from funcmtl.mtl._paths import PATHS, SharedGradients
from funcmtl.mtl._pertask import scale_rows, task_gradients
from funcmtl.mtl._reduction import LOCAL, Reduction
from funcmtl.mtl._split import SplitModel
from funcmtl.mtl._tasks import Task, check_tasks, task_weights
from funcmtl.weightings._base import Weighting

Params = dict[str, Tensor]


class MTLState(NamedTuple):
    """Everything a multi-task run carries from step to step (a pytree)."""

    params: Params
    buffers: Params
    opt_state: Any
    aggregator_state: Any
    weighting_state: Any
    step: Tensor  # shape=(), int64: number of updates applied
    hparams: dict[str, Tensor] = {}  # 0-dim tensors, e.g. a per-member learning rate


def _aggregator(value: Aggregator | str) -> Aggregator:
    return aggregators_lib.get(value) if isinstance(value, str) else value


def _weighting(value: Weighting | str | None) -> Weighting:
    if value is None:
        return weightings_lib.get("equal")
    return weightings_lib.get(value) if isinstance(value, str) else value


def init_state(
    params: Params,
    buffers: Params,
    tasks: Sequence[Task],
    optimizer: train.Optimizer,
    aggregator: Aggregator | str = "mean",
    weighting: Weighting | str | None = None,
    hparams: dict[str, Any] | None = None,
) -> MTLState:
    """A fresh multi-task train state at step 0."""
    check_tasks(tasks)
    hparams = {name: torch.as_tensor(value) for name, value in (hparams or {}).items()}
    transform = train.resolve_optimizer(optimizer, hparams)
    leaves = tree.leaves(params)
    device = leaves[0].device if leaves else None
    return MTLState(
        params=params,
        buffers=buffers,
        opt_state=transform.init(params),
        # On the parameters' device; init(num_tasks) alone, so that a custom method written
        # to the minimal contract works too.
        aggregator_state=_to(device, _aggregator(aggregator).init(len(tasks))),
        weighting_state=_to(device, _weighting(weighting).init(len(tasks))),
        step=torch.zeros((), dtype=torch.int64),
        hparams=hparams,
    )


def _to(device: torch.device | None, state: Any) -> Any:
    if device is None:
        return state
    return tree.map(lambda x: x.to(device) if isinstance(x, Tensor) else x, state)


def _cosines(gram: Tensor) -> Tensor:
    norms = gram.diagonal().clamp_min(0).sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(1e-12)


def make_step(
    model: SplitModel,
    tasks: Sequence[Task],
    optimizer: train.Optimizer,
    aggregator: Aggregator | str = "mean",
    weighting: Weighting | str | None = None,
    *,
    path: str = "exact",
    task_chunk_size: int | None = None,
    gramian_chunks: int = 2,
    regularizer: Callable[[Params], Tensor] | None = None,
    donate: bool = False,
    reduction: Reduction = LOCAL,
):
    """Build the pure multi-task step for ``model`` (see :func:`funcmtl.mtl.split_module`).

    Args:
        model: the model cut at its shared representation.
        tasks: the task specs, in the order of the loss vector.
        optimizer: a transform or a factory ``hparams -> transform``.
        aggregator: an :class:`~funcmtl.aggregators.Aggregator` or a name ("pcgrad", ...).
        weighting: a loss weighting or its name (default "equal").
        path: "exact" (the Jacobian wrt the shared parameters), "gramian" (only ``J Jᵀ``,
            chunked; needs an aggregator with ``weights``) or "representation" (gradients
            wrt the shared representation).
        task_chunk_size: tasks per vmap chunk when building ``J`` (``chunk_size`` is kept
            for members, as in :func:`funcmtl.ensemble.make_step`).
        gramian_chunks: parameter chunks of the Gramian path; peak memory is the largest
            chunk of ``J`` (about ``1/gramian_chunks`` of it), the extra cost one encoder
            forward per chunk and the input gradients after each chunk but the last.
        regularizer: ``params -> 0-dim`` penalty added outside the aggregation (its
            gradient is added as is), e.g. ``SoftSharing.coupling_penalty`` times a strength.
        donate: reuse the input state's buffers for the optimizer step (see
            :func:`funcmtl.optim.update_params`).
        reduction: where the batch is spread over processes, e.g.
            :func:`funcmtl.distributed.data_parallel`: each process computes on its share of
            the batch and the task Jacobian (or the representation Gramian) is all-reduced
            *before* aggregation, so every process applies the full batch's update. Such a
            step communicates, so it runs eagerly (not under ``vmap``); path="gramian" is
            refused when there is more than one process.

    Returns:
        ``step(state, batch, key) -> (state, metrics)``; metrics hold ``loss`` (weighted
        sum), ``losses`` ``(T,)``, ``loss_weights`` ``(T,)``, ``grad_norms`` ``(T,)`` and
        ``cosine`` ``(T, T)`` (task-gradient cosines on the path's gradients), plus
        ``"<task>/<metric>"`` training metrics.
    """
    check_tasks(tasks)
    if path not in PATHS:
        raise ValueError(f"`path` must be one of {PATHS}; got {path!r}.")
    aggregate = _aggregator(aggregator)
    weigh = _weighting(weighting)
    if path != "exact" and (model.encoder_task_names or (model.whole_model and path != "gramian")):
        raise ValueError(
            f"path={path!r} needs a model cut at a shared representation (`shared` + "
            "`tasks.heads`); this whole-model split supports path='exact' (and 'gramian' "
            "when every parameter is shared)."
        )
    if path == "gramian" and aggregate.weights is None:
        raise ValueError(
            "path='gramian' needs an aggregator that is a weighting of the Gramian "
            "(it has `weights`); this one has none (e.g. graddrop): use path='exact'."
        )
    reduction.check_path(path)
    weighs = aggregate.weights is not None  # a weighting of the Gramian (all but GradDrop)
    # GradDrop on the representation path needs every process's rows, not only their Gramian.
    gather_rows = path == "representation" and not weighs
    static_weights = task_weights(tasks)  # each Task's fixed `weight`
    missing = [t.name for t in tasks if t.name not in model.heads]
    if missing:
        raise ValueError(
            f"every task needs a head; no head for {missing}, heads {list(model.heads)}."
        )

    def shared_gradients(grads_t, params: Params) -> SharedGradients:
        if path == "exact":
            return _paths.exact(grads_t, model, reduction, task_chunk_size=task_chunk_size)
        if path == "gramian":
            return _paths.gramian(grads_t, model, params, chunks=gramian_chunks,
                                  task_chunk_size=task_chunk_size)
        return _paths.representation(grads_t, reduction, weighs=weighs, gather_rows=gather_rows)

    def step(state: MTLState, batch: Any, key: Tensor) -> tuple[MTLState, dict[str, Tensor]]:
        k_forward, k_weigh, k_aggregate = random.split(key, 3)
        # Losses and per-task gradients (this process's examples, then the whole batch's).
        local = reduction.local_batch(batch)
        grads_t = task_gradients(model, tasks, state.params, state.buffers, local,
                                 key=reduction.local_key(k_forward))
        grads_t = reduction.task_gradients(grads_t, tasks, local, path, gather_rows)
        shared = shared_gradients(grads_t, state.params)
        # Loss weighting: from the detached losses (and the gradient norms, for GradNorm).
        grad_norms = shared.gramian.diagonal().clamp_min(0).sqrt()
        loss_weights, weighting_state = weigh.weights(
            grads_t.losses.detach(), state.weighting_state, key=k_weigh, grad_norms=grad_norms
        )
        loss_weights = loss_weights * static_weights.to(loss_weights)
        # Aggregation of the shared part.
        direction, aggregator_state = _aggregate(
            aggregate, shared, loss_weights, state.aggregator_state, k_aggregate
        )
        # Gradients of every parameter, then the optimizer.
        grads = _parameter_gradients(direction, shared, grads_t.head_grads, loss_weights)
        if regularizer is not None:  # e.g. soft sharing's coupling penalty: not per task
            penalty_grads = torch.func.grad(regularizer)(state.params)
            grads = {n: g + penalty_grads[n] for n, g in grads.items()}
        grads = {n: grads[n] for n in state.params}  # the params' key order (one treespec)
        transform = train.resolve_optimizer(optimizer, state.hparams)
        params, opt_state = optim.update_params(
            transform, grads, state.opt_state, state.params, donate=donate
        )
        new_state = MTLState(
            params={n: params[n] for n in state.params},
            buffers={**state.buffers, **grads_t.buffers},
            opt_state=opt_state,
            aggregator_state=aggregator_state,
            weighting_state=weighting_state,
            step=state.step + 1,
            hparams=state.hparams,
        )
        metrics = dict(grads_t.metrics)
        metrics.update(
            loss=(loss_weights * grads_t.losses).sum(),
            losses=grads_t.losses,
            loss_weights=loss_weights,
            grad_norms=grad_norms,
            cosine=_cosines(shared.gramian),
        )
        return new_state, metrics

    return step


def _aggregate(aggregate: Aggregator, shared: SharedGradients, loss_weights: Tensor,
               state: Any, key: Tensor) -> tuple[Params, Any]:
    """The shared parameters' update direction from the loss-weighted task gradients."""
    if shared.empty:
        return {}, state
    if aggregate.weights is not None:
        # A Gramian weighting sees the Gramian of the loss-weighted gradients, W G W, and its
        # weights combine the raw rows scaled by W.
        scaled = shared.gramian * loss_weights[:, None] * loss_weights[None, :]
        task_weights_, state = aggregate.weights(scaled, state, key=key)
        return shared.combine(task_weights_ * loss_weights), state
    weighted = scale_rows(loss_weights, shared.rows)
    direction, state = aggregate.update(weighted, state, key=key)
    return shared.to_params(direction), state


def _parameter_gradients(direction: Params, shared: SharedGradients, head_grads: list[Params],
                         loss_weights: Tensor) -> Params:
    """The aggregated direction for the shared parameters; each task's own (weighted) gradient
    for its head, and for its task-specific encoder parameters in a whole-model split."""
    grads = dict(direction)
    grads.update({n: combine(loss_weights, r) for n, r in shared.own.items()})
    for weight, own_grads in zip(loss_weights, head_grads, strict=True):
        grads.update({n: g * weight for n, g in own_grads.items()})
    return grads

