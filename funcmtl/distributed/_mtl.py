"""Data-parallel multi-task training: every rank aggregates the same full-batch Jacobian.

Rank r holds a shard of the batch (``n_{r,t}`` labelled examples of task t out of
``N_t = Σ_r n_{r,t}``) and computes its per-task quantities on it. Each built-in task loss is
a mean over its labelled examples, so the full batch's task gradient is the count-weighted
sum of the ranks' gradients,

    J[t] = Σ_r (n_{r,t} / N_t) J_r[t]                      (exact, even for uneven shards)

and likewise for losses, head gradients and mean-type metrics. The task Jacobian ``J``
``(T, P)`` is all-reduced *before* aggregation; then every rank runs the aggregator on the
identical full-batch ``J`` with the identical key and applies the identical update, so the
replicas never drift apart. Aggregating each rank's ``J_r`` and averaging the directions
afterwards is a different algorithm: an aggregator is not linear in ``J`` (PCGrad projects
on the conflicts of the rank's own noisier gradients, MGDA's min-norm weights change), so
it would train something other than the method on the full batch.

Paths of :func:`funcmtl.mtl.make_step`:

- ``"exact"``: the rows ``J_r`` scaled by ``n_{r,t}/N_t`` are summed over ranks: one
  all-reduce of ``T × P`` values per step.
- ``"representation"``: the full-batch representation Jacobian is block-diagonal over
  examples, so its Gramian is the sum of the ranks' Gramians of their scaled rows (a
  ``T × T`` all-reduce); every rank gets the same weights, back-propagates its local
  ``Σ wₜ ∂Lₜ/∂z`` through the encoder, and the parameter gradients are summed. Exact. An
  aggregator without Gramian weights (GradDrop) needs the rows themselves: they are
  all-gathered (``T × N × |z|`` values), aggregated identically, and each rank
  back-propagates its own examples' part.
- ``"gramian"``: refused when ``world_size > 1``: the Gramian of the full-batch Jacobian is
  ``(Σ_r J_r)(Σ_r J_r)ᵀ``, whose cross terms ``J_r J_sᵀ`` no rank has.

Not reproduced across world sizes: dropout masks (each rank draws its own, from the step
key folded with its rank) and BatchNorm statistics (computed per rank, not synchronised;
running averages are averaged over ranks). Metrics that are not means (F1, R²) are the
count-weighted average of the ranks' values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from funcmtl import random, tree
from funcmtl.distributed._collectives import all_gather_concat, all_reduce_sum
from funcmtl.distributed._context import Context
from funcmtl.distributed._shard import shard_batch
from funcmtl.mtl._pertask import TaskGradients, representation_rows, scale_rows
from funcmtl.mtl._reduction import LOCAL, Reduction
from funcmtl.mtl._tasks import Task

__all__ = ["data_parallel", "task_counts"]

PATHS = ("exact", "representation")


def task_counts(tasks: Sequence[Task], targets: dict[str, Tensor], like: Tensor) -> Tensor:
    """Labelled entries per task, ``(T,)`` in ``like``'s dtype: what each task loss averages over.

    A task without ``mask_value`` counts its examples; a masked one its present labels.
    """
    counts = []
    for task in tasks:
        y = targets[task.name]
        mask = task.label_mask(y)
        counts.append(torch.as_tensor(y.shape[0]) if mask is None else mask.sum())
    return torch.stack(counts).to(dtype=like.dtype, device=like.device)


def data_parallel(ctx: Context, *, split_batch: bool = True) -> Reduction:
    """Hooks that make :func:`funcmtl.mtl.make_step` train one model over ``ctx``'s ranks.

    Args:
        ctx: from :func:`funcmtl.distributed.init`. In a 1-process world every hook is the
            identity and the step is exactly the plain one.
        split_batch: the step receives the *global* batch (every rank draws the same one,
            e.g. :func:`funcmtl.train.fit` with the same key) and keeps its contiguous slice
            (:func:`funcmtl.distributed.shard_batch`); ``False`` when each rank already
            loads only its own examples (shards may then differ in size).

    Returns:
        a :class:`funcmtl.mtl.Reduction` to pass as ``make_step(..., reduction=...)``.

    Example:
        Run as a plain script this is a 1-process world; under ``torchrun`` the same code
        trains one model over all the ranks.

        >>> tasks = [fm.mtl.Task("a", "regression"), fm.mtl.Task("b", "regression")]
        >>> model = fm.mtl.HardSharing(nn.Linear(4, 8),
        ...                            {t.name: fm.mtl.output_head(8, t) for t in tasks})
        >>> params, buffers = fm.init(model, fm.random.key(0))
        >>> opt = fm.optim.adam(1e-2)
        >>> state = fm.mtl.init_state(params, buffers, tasks, opt, "pcgrad")
        >>> data = (torch.randn(64, 4), {"a": torch.randn(64), "b": torch.randn(64)})
        >>> split = fm.mtl.split_module(model)
        >>> with fm.distributed.init() as ctx:
        ...     dp = fm.distributed.data_parallel(ctx)
        ...     step = fm.mtl.make_step(split, tasks, opt, "pcgrad", reduction=dp)
        ...     result = fm.train.fit(step, state, data, key=fm.random.key(1), batch_size=16,
        ...                           epochs=2)
        >>> ctx.world_size
        1
    """
    if ctx.group is None:
        return LOCAL

    def check_path(path: str) -> None:
        if path not in PATHS:
            raise ValueError(
                f"path={path!r} cannot run data-parallel: the full-batch Gramian "
                "(Σ_r J_r)(Σ_r J_r)ᵀ has cross terms between ranks that no rank has; use "
                "path='exact' (all-reduces J) or path='representation' (exact and cheap)."
            )

    def reduce(
        grads: TaskGradients, tasks: Sequence[Task], batch: Any, path: str, gather_rows: bool
    ) -> TaskGradients:
        _, targets = batch
        losses = grads.losses
        counts = task_counts(tasks, targets, losses)
        size = tree.leaves(batch)[0].shape[0]
        sizes = torch.zeros(ctx.world_size, dtype=losses.dtype, device=losses.device)
        sizes[ctx.rank] = size
        index = {task.name: t for t, task in enumerate(tasks)}
        # Everything weighted by its count, summed in one message, divided by the totals.
        local = {
            "counts": counts,
            "sizes": sizes,
            "losses": losses * counts,
            "heads": [
                {n: g * c.to(g.dtype) for n, g in own.items()}
                for own, c in zip(grads.head_grads, counts, strict=True)
            ],
            "metrics": {
                name: value * counts[index[name.split("/", 1)[0]]]
                for name, value in grads.metrics.items()
            },
            "buffers": {n: b * size for n, b in grads.buffers.items() if b.is_floating_point()},
        }
        total = all_reduce_sum(local, ctx)
        totals = total["counts"].clamp_min(1)  # a task labelled nowhere: 0 / 1
        batch_total = total["sizes"].sum()
        rank_sizes = [int(s) for s in total["sizes"].tolist()]
        start = sum(rank_sizes[: ctx.rank])

        scale = counts / totals  # n_{r,t} / N_t
        rows = scale_rows(scale, representation_rows(grads))
        if gather_rows:
            for leaf in tree.leaves(rows):
                if leaf.dim() < 2 or leaf.shape[1] != size:
                    raise ValueError(
                        "gathering representation gradients needs the example axis first in "
                        f"every leaf of z ({size} local examples); found a row of shape "
                        f"{tuple(leaf.shape[1:])}."
                    )
            rows = tree.map(lambda r: r.movedim(1, 0), rows)
            rows = tree.map(lambda r: r.movedim(0, 1), all_gather_concat(rows, ctx, rank_sizes))

        encoder_vjp = grads.encoder_vjp
        if path == "representation":

            def encoder_vjp(cotangent: Any) -> tuple[dict[str, Tensor]]:
                if gather_rows:  # the full batch's cotangent: back-propagate our examples
                    cotangent = tree.map(lambda c: c[start : start + size], cotangent)
                return all_reduce_sum(grads.encoder_vjp(cotangent), ctx)

        return grads._replace(
            losses=total["losses"] / totals,
            representation_grads=rows,
            row_factors=None,
            head_grads=[
                {n: g / totals[t].to(g.dtype) for n, g in own.items()}
                for t, own in enumerate(total["heads"])
            ],
            metrics={
                name: value / totals[index[name.split("/", 1)[0]]]
                for name, value in total["metrics"].items()
            },
            encoder_vjp=encoder_vjp,
            buffers={**grads.buffers, **{
                n: b / batch_total.to(b.dtype) for n, b in total["buffers"].items()
            }},
        )

    rank = ctx.rank
    return Reduction(
        check_path=check_path,
        local_batch=(lambda batch: shard_batch(batch, ctx)) if split_batch else (lambda b: b),
        local_key=lambda key: random.fold_in(key, rank),
        task_gradients=reduce,
        sum=lambda value: all_reduce_sum(value, ctx),
    )
