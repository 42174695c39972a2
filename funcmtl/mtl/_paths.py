"""The three gradient paths of the multi-task step, behind one small interface.

A path turns the per-task gradients (:class:`~funcmtl.mtl._pertask.TaskGradients`) into a
:class:`SharedGradients`: the Gramian ``G (T, T)`` of the task gradients on the shared part,
and the two ways back to parameter gradients — ``combine(w)`` for the aggregators that are
a weighting of ``G`` (``Σₜ wₜ gₜ``), and ``rows`` with ``to_params`` for those that
aggregate the rows themselves (GradDrop).

- :func:`exact` — the rows are the Jacobian wrt the shared parameters (one VJP per task).
- :func:`gramian` — only ``G`` (chunked over parameters), then one VJP of ``Σₜ wₜ ∂Lₜ/∂z``.
- :func:`representation` — the rows are ``∂Lₜ/∂z`` wrt the shared representation ``z``
  (MGDA-UB, Sener & Koltun 2018); affine heads give ``G`` from factors without the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor

from funcmtl import tree
from funcmtl.aggregators._base import combine
from funcmtl.aggregators._base import gramian as gramian_of
from funcmtl.mtl._jacobian import chunked_gramian, parameter_chunks
from funcmtl.mtl._pertask import (
    TaskGradients,
    factored_combine,
    factored_gramian,
    representation_rows,
    shared_jacobian,
)
from funcmtl.mtl._reduction import Reduction
from funcmtl.mtl._split import SplitModel

Params = dict[str, Tensor]
PATHS = ("exact", "gramian", "representation")


class SharedGradients(NamedTuple):
    """What a path hands the aggregation (see the module docstring)."""

    gramian: Tensor  # (T, T) of the unweighted task gradients
    combine: Callable[[Tensor], Params]  # (T,) weights -> the shared parameters' gradient
    rows: Any  # leaves (T, ...): the rows a row aggregator combines; None: only G exists
    to_params: Callable[[Any], Params]  # an aggregated row -> the shared parameters' gradient
    own: Params  # whole-model splits: (T, ...) rows of task-specific encoder parameters
    empty: bool  # nothing is shared (soft sharing): no direction to aggregate


def exact(grads: TaskGradients, model: SplitModel, reduction: Reduction, *,
          task_chunk_size: int | None) -> SharedGradients:
    rows = reduction.sum(shared_jacobian(grads, task_chunk_size=task_chunk_size))
    own = {n: rows.pop(n) for n in model.encoder_task_names}
    empty = not tree.leaves(rows)
    # Without shared parameters (soft sharing), the diagnostics use the tasks' own.
    return SharedGradients(
        gramian=gramian_of(own if empty else rows),
        combine=lambda w: combine(w, rows),
        rows=rows,
        to_params=lambda direction: direction,
        own=own,
        empty=empty,
    )


def gramian(grads: TaskGradients, model: SplitModel, params: Params, *, chunks: int,
            task_chunk_size: int | None) -> SharedGradients:
    shared = {n: params[n] for n in model.shared_names if n not in model.encoder_task_names}
    z_rows = representation_rows(grads)
    gram = chunked_gramian(grads.encode, shared, z_rows,
                           chunks=parameter_chunks(shared, chunks),
                           task_chunk_size=task_chunk_size)
    return SharedGradients(
        gramian=gram,
        combine=lambda w: grads.encoder_vjp(combine(w, z_rows))[0],
        rows=None,
        to_params=_no_rows,
        own={},
        empty=not tree.leaves(z_rows),
    )


def representation(grads: TaskGradients, reduction: Reduction, *, weighs: bool,
                   gather_rows: bool) -> SharedGradients:
    """``weighs``: the aggregator is a weighting of ``G`` (then affine heads' factors give
    ``G`` without the rows); ``gather_rows``: the reduction gathered every rank's rows."""
    factors = grads.row_factors if weighs else None
    if factors is not None:
        return SharedGradients(
            gramian=factored_gramian(factors),
            combine=lambda w: grads.encoder_vjp(factored_combine(w, factors))[0],
            rows=None,
            to_params=_no_rows,
            own={},
            empty=False,
        )
    z_rows = representation_rows(grads)
    gram = gramian_of(z_rows)
    if not gather_rows:  # block-diagonal over examples: the full batch's G is the ranks' sum
        gram = reduction.sum(gram)
    return SharedGradients(
        gramian=gram,
        combine=lambda w: grads.encoder_vjp(combine(w, z_rows))[0],
        rows=z_rows,
        to_params=lambda direction: grads.encoder_vjp(direction)[0],
        own={},
        empty=not tree.leaves(z_rows),
    )


def _no_rows(direction: Any) -> Params:
    raise AssertionError("this path has no rows: its aggregator must have `weights`")
