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
from funcmtl.mtl._split import AffineHead, SplitModel
from funcmtl.mtl._task_losses import task_losses, task_metrics
from funcmtl.mtl._tasks import Task

Params = dict[str, Tensor]


class RowFactors(NamedTuple):
    """``∂Lₜ/∂z = δₜ Wₜ`` for heads that are one ``Linear`` of ``z (B, D)``
    (:class:`funcmtl.mtl.AffineHead`): the representation gradients without the ``(T, B, D)``
    rows."""

    delta: Tensor  # (T, B, O): ∂Lₜ/∂outₜ
    weight: Tensor  # (T, O, D): the heads' weights


class TaskGradients(NamedTuple):
    """The result of :func:`task_gradients`."""

    losses: Tensor  # (T,) unweighted task losses
    representation_grads: Any  # leaves (T, *z_shape): ∂Lₜ/∂z; None when `row_factors` is set
    head_grads: list[Params]  # task t's gradient for its own head parameters
    metrics: dict[str, Tensor]  # "task/metric" training metrics
    encode: Callable[[Params], Any]  # shared params -> z (same key: deterministic)
    encoder_vjp: Callable[[Any], tuple[Params]]  # cotangent on z -> shared-param gradient
    buffers: Params  # encoder buffers after the forward (BatchNorm statistics)
    row_factors: RowFactors | None = None  # every head affine: the rows in factored form


def scale_rows(weights: Tensor, rows: Any) -> Any:
    """Row t of every leaf ``(T, ...)`` of ``rows`` times ``weights[t]``."""
    return tree.map(
        lambda r: r * weights.reshape(-1, *([1] * (r.dim() - 1))).to(r.dtype), rows
    )


def representation_rows(grads: TaskGradients) -> Any:
    """``∂Lₜ/∂z`` with leaves ``(T, *z_shape)``, built from the factors when need be."""
    if grads.representation_grads is not None:
        return grads.representation_grads
    return torch.einsum("tbo,tod->tbd", grads.row_factors.delta, grads.row_factors.weight)


def factored_gramian(factors: RowFactors) -> Tensor:
    """``G = J Jᵀ (T, T)`` of the rows ``δₜ Wₜ``: ``Gₜₛ = Σ_{o,p} (δₜᵀδₛ)_{op} (Wₜ Wₛᵀ)_{op}``,
    ``O(T² O² (B + D))`` instead of ``O(T² B D)``, and no ``(T, B, D)`` tensor."""
    deltas = torch.einsum("tbo,sbp->tosp", factors.delta, factors.delta)
    weights = torch.einsum("tod,spd->tosp", factors.weight, factors.weight)
    return (deltas * weights).sum((1, 3))


def factored_combine(weights: Tensor, factors: RowFactors) -> Tensor:
    """``Σₜ wₜ δₜ Wₜ (B, D)``: one ``(B, T·O) @ (T·O, D)`` matmul."""
    delta = factors.delta * weights.to(factors.delta.dtype)[:, None, None]
    num_tasks, batch, out = delta.shape
    flat = delta.permute(1, 0, 2).reshape(batch, num_tasks * out)
    return flat @ factors.weight.reshape(num_tasks * out, -1)


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
    affine = isinstance(z, Tensor) and z.dim() == 2 and all(
        t.name in model.affine_heads for t in tasks
    )
    group_factors: list[RowFactors] = []
    for group in _interchangeable_groups(model, tasks):
        first = tasks[group[0]]
        head = model.heads[first.name]
        if affine:
            layout = model.affine_heads[first.name]
            head_params = tree.stack([_own_params(model, params, tasks[i].name) for i in group])
            ys = torch.stack([targets[tasks[i].name] for i in group])
            factors, loss, out, dp = _affine_group(layout, first, head_params, z, ys)
            group_factors.append(factors)
            _collect(model, tasks, group, first, loss, out, ys, dp, order, group_losses,
                     head_grads, metrics)
            continue

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
        group_rows.append(dz)
        _collect(model, tasks, group, first, loss, out, ys, dp, order, group_losses, head_grads,
                 metrics)
    factors = None
    if affine and len({f.delta.shape[-1] for f in group_factors}) == 1:
        factors = RowFactors(*(torch.cat(parts) for parts in zip(*group_factors, strict=True)))
        rows = None
    else:
        group_rows += [torch.einsum("tbo,tod->tbd", *f) for f in group_factors]
        rows = tree.map(lambda *r: torch.cat(r), *group_rows) if len(group_rows) > 1 else (
            group_rows[0])  # torch.cat would copy even a single piece
    losses = torch.cat(group_losses) if len(group_losses) > 1 else group_losses[0]
    if order != list(range(len(tasks))):
        # Back to task order; with one group in order (identical heads) no copy is made.
        inverse = torch.argsort(torch.tensor(order, device=losses.device))
        losses = losses[inverse]

        def reorder(r: Tensor) -> Tensor:
            return r.index_select(0, inverse.to(r.device))

        rows = None if rows is None else tree.map(reorder, rows)
        factors = None if factors is None else RowFactors(*map(reorder, factors))
    return TaskGradients(
        losses=losses,
        representation_grads=rows,
        head_grads=head_grads,
        metrics=metrics,
        encode=lambda p: encode_with_buffers(p)[0],
        encoder_vjp=encoder_vjp,
        buffers=new_buffers,
        row_factors=factors,
    )


def _affine_group(
    layout: AffineHead, task: Task, head_params: Params, z: Tensor, ys: Tensor
) -> tuple[RowFactors, Tensor, Tensor, Params]:
    """A group of identical one-``Linear`` heads (``G`` of them) on ``z (B, D)``: all outputs
    in one matmul, ``δ = ∂L/∂out`` by a vmapped backward of the losses alone, and the heads'
    gradients ``δᵀ z`` in another — without the ``(G, B, D)`` gradients wrt ``z``.

    Returns ``(factors, losses (G,), outputs (G, B, ...), head grads {name: (G, ...)})``.
    """
    weight = head_params[layout.weight]  # (G, O, D)
    out = torch.einsum("bd,god->gbo", z, weight)
    if layout.bias is not None:
        out = out + head_params[layout.bias][:, None, :]
    if layout.squeeze:
        out = out.squeeze(-1)

    def loss_of(o: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss = task_losses([task], {task.name: o}, {task.name: y})[0]
        return loss, loss

    delta, loss = torch.func.vmap(torch.func.grad(loss_of, has_aux=True))(out, ys)
    if layout.squeeze:
        delta = delta[..., None]
    grads = {layout.weight: torch.einsum("gbo,bd->god", delta, z)}
    if layout.bias is not None:
        grads[layout.bias] = delta.sum(1)
    return RowFactors(delta, weight), loss, out, grads


def _collect(model, tasks, group, first, loss, out, ys, head_param_grads, order, group_losses,
             head_grads, metrics) -> None:
    """Record a group's losses, head gradients and training metrics under its tasks."""
    scores = torch.func.vmap(
        lambda o, y: task_metrics([first], {first.name: o}, {first.name: y})
    )(out.detach(), ys)
    order += group
    group_losses.append(loss)
    for position, index in enumerate(group):
        name = tasks[index].name
        prefix = model.head_prefixes[name]
        head_grads[index] = {prefix + n: g[position] for n, g in head_param_grads.items()}
        for metric, values in scores.items():
            metrics[f"{name}/{metric.split('/', 1)[1]}"] = values[position]


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


def shared_jacobian(grads: TaskGradients, *, task_chunk_size: int | None = None) -> Params:
    """The exact per-task Jacobian wrt the shared parameters: leaves ``(T, *shape)``."""
    (rows,) = torch.func.vmap(grads.encoder_vjp, chunk_size=task_chunk_size)(
        representation_rows(grads)
    )
    return rows
