"""Every task's loss and gradient with respect to the shared representation, in one pass.

The shared encoder runs once, under ``vjp``; each task's head then runs on ``z`` and one
small backward gives ``∂Lₜ/∂z`` and the head's own gradient. From there the three paths of
:mod:`funcmtl.mtl._jacobian` take over: ``encoder_vjp`` maps any cotangent on ``z`` back to
the shared parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl import random, tree
from funcmtl.mtl._split import SplitModel
from funcmtl.mtl._tasks import Task, task_losses, task_metrics

Params = dict[str, Tensor]


class TaskGradients(NamedTuple):
    """The result of :func:`task_gradients`."""

    losses: Tensor  # (T,) unweighted task losses
    representation_grads: Any  # leaves (T, *z_shape): ∂Lₜ/∂z
    head_grads: list[Params]  # task t's gradient for its own head parameters
    metrics: dict[str, Tensor]  # "task/metric" training metrics
    encode: Callable[[Params], Any]  # shared params -> z (same key: deterministic)
    encoder_vjp: Callable[[Any], tuple[Params]]  # cotangent on z -> shared-param gradient
    buffers: Params  # encoder buffers after the forward (BatchNorm statistics)


def task_gradients(
    model: SplitModel,
    tasks: Sequence[Task],
    params: Params,
    buffers: Params,
    batch: tuple[Any, dict[str, Tensor]],
    *,
    key: Tensor | None,
    train: bool = True,
) -> TaskGradients:
    """Forward once, and get every task's loss and ``∂Lₜ/∂z`` through its own head.

    Tasks whose heads share an architecture and whose specs agree (kind, size, loss,
    metrics, mask value) are handled together: their head parameters are stacked and one
    vmapped backward serves the whole group, so 40 identical heads cost one batched call.

    Args:
        model: the model cut at its representation (:func:`funcmtl.mtl.split_module`).
        tasks: task specs, in loss-vector order; each needs a head in ``model``.
        params, buffers: the full model's dicts.
        batch: ``(x, {task: targets})``.
        key: dropout key (split between the encoder and the heads).
    """
    x, targets = batch
    k_encode, k_heads = (None, None) if key is None else random.split(key)
    shared = {n: params[n] for n in model.shared_names}

    def encode_with_buffers(p: Params):
        return model.encode(p, buffers, x, train=train, key=k_encode)

    z, encoder_vjp, new_buffers = torch.func.vjp(encode_with_buffers, shared, has_aux=True)
    order: list[int] = []  # task indices in the order the groups produce them
    group_losses, group_rows, head_grads = [], [], [None] * len(tasks)
    metrics: dict[str, Tensor] = {}
    for group in _interchangeable_groups(model, tasks):
        first = tasks[group[0]]
        head = model.heads[first.name]

        def loss_and_output(
            head_params: Params, z_in: Any, y: Tensor, k: Tensor | None, head=head, first=first
        ):
            out = head(head_params, z_in, x, train=train, key=k)
            return task_losses([first], {first.name: out}, {first.name: y})[0], out

        head_params = tree.stack([_own_params(model, params, tasks[i].name) for i in group])
        ys = torch.stack([targets[tasks[i].name] for i in group])
        keys = None if k_heads is None else random.fold_in(k_heads, torch.tensor(group))
        grad_fn = torch.func.grad_and_value(loss_and_output, argnums=(1, 0), has_aux=True)
        (dz, dp), (loss, out) = torch.func.vmap(
            grad_fn, in_dims=(0, None, 0, None if keys is None else 0)
        )(head_params, z, ys, keys)
        scores = torch.func.vmap(
            lambda o, y, first=first: task_metrics([first], {first.name: o}, {first.name: y})
        )(out.detach(), ys)
        order += group
        group_losses.append(loss)
        group_rows.append(dz)
        for position, index in enumerate(group):
            name = tasks[index].name
            prefix = model.head_prefixes[name]
            head_grads[index] = {prefix + n: g[position] for n, g in dp.items()}
            for metric, values in scores.items():
                metrics[f"{name}/{metric.split('/', 1)[1]}"] = values[position]
    if len(group_rows) == 1:  # torch.cat would copy even a single piece
        losses, rows = group_losses[0], group_rows[0]
    else:
        losses, rows = torch.cat(group_losses), tree.map(lambda *r: torch.cat(r), *group_rows)
    if order != list(range(len(tasks))):
        # Back to task order; with one group in order (identical heads) no copy is made.
        inverse = torch.argsort(torch.tensor(order, device=losses.device))
        losses = losses[inverse]
        rows = tree.map(lambda r: r.index_select(0, inverse.to(r.device)), rows)
    return TaskGradients(
        losses=losses,
        representation_grads=rows,
        head_grads=head_grads,
        metrics=metrics,
        encode=lambda p: encode_with_buffers(p)[0],
        encoder_vjp=encoder_vjp,
        buffers=new_buffers,
    )


def _own_params(model: SplitModel, params: Params, task: str) -> Params:
    prefix = model.head_prefixes[task]
    return {n[len(prefix) :]: params[n] for n in model.task_names[task]}


def _interchangeable_groups(model: SplitModel, tasks: Sequence[Task]) -> list[list[int]]:
    """Task indices grouped by head architecture and task spec (all but the name)."""
    groups: dict[tuple, list[int]] = {}
    for index, task in enumerate(tasks):
        signature = (
            model.head_signatures[task.name],
            task.kind,
            task.output_size,
            task.loss,
            tuple(task.metrics.items()),
            repr(task.mask_value),
        )
        groups.setdefault(signature, []).append(index)
    return list(groups.values())


def shared_jacobian(grads: TaskGradients, *, chunk_size: int | None = None) -> Params:
    """The exact per-task Jacobian wrt the shared parameters: leaves ``(T, *shape)``."""
    (rows,) = torch.func.vmap(grads.encoder_vjp, chunk_size=chunk_size)(
        grads.representation_grads
    )
    return rows
