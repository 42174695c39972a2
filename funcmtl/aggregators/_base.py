"""The aggregator contract: per-task gradients ``[T, ...]`` -> one update direction.

An aggregator is ``Aggregator(init, update, weights)``::

    state = init(num_tasks)
    direction, state = update(task_grads, state, key=key)

``task_grads`` is a tensor ``(T, P)`` or any pytree whose leaves all have the leading task
axis ``T`` (e.g. ``{"trunk.0.weight": (T, 512, 128), ...}``); ``direction`` has the same
structure without that axis. Everything is pure torch with fixed iteration counts, so an
aggregator runs under ``vmap`` (K models, each with its own gradient surgery) and on CUDA.

Most methods are a *weighting* of the Gramian ``G = J Jᵀ``: they choose weights ``w (T,)`` and
return ``Jᵀ w``. Those expose ``weights(gramian, state, key=key) -> (w, state)``, so a caller
can take the cheap path — weights from a Gramian accumulated chunk by chunk, then one
backward of ``Σ wₜ Lₜ`` — without ever holding ``J``. :func:`from_weighting` builds
``update`` from ``weights``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

__all__ = [
    "Aggregator", "EmptyState", "check_gramian", "check_num_tasks", "combine", "from_weighting",
    "gramian", "num_tasks_of", "require_key", "stateless_init",
]

import einops
import torch
from torch import Tensor

from funcmtl import tree
from funcmtl._transform import (
    EmptyState,
    InitFn,
    Options,
    call_repr,
    check_num_tasks,
    stateless_init,
)
from funcmtl.aggregators._member_batch import BatchedWeights, member_update, sum_of_products
from funcmtl.optim._checks import _readable as readable

PyTree = Any
AggregatorState = Any


class UpdateFn(Protocol):
    def __call__(
        self, task_grads: PyTree, state: AggregatorState, *, key: Tensor | None = None
    ) -> tuple[PyTree, AggregatorState]: ...


class WeightsFn(Protocol):
    def __call__(
        self, gramian: Tensor, state: AggregatorState, *, key: Tensor | None = None
    ) -> tuple[Tensor, AggregatorState]: ...


class Aggregator(NamedTuple):
    """``init(num_tasks, *, dtype=float32, device=None) -> state``; ``update(task_grads,
    state, *, key=None) -> (direction, state)``; ``weights(gramian, state, *, key=None) ->
    (weights (T,), state)`` or ``None`` for methods that are not a weighting of the Gramian
    (e.g. GradDrop). ``name`` and ``options`` say what built it: it prints as that call."""

    init: InitFn
    update: UpdateFn
    weights: WeightsFn | None = None
    name: str = ""
    options: Options = ()

    def __repr__(self) -> str:
        return call_repr("Aggregator", self.name, self.options)


def num_tasks_of(task_grads: PyTree) -> int:
    """The common leading task axis ``T`` of every leaf, checked once at the boundary."""
    leaves = tree.leaves(task_grads)
    if not leaves:
        raise ValueError("`task_grads` must hold at least one tensor; got an empty pytree.")
    sizes = {x.shape[0] if x.dim() else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        found = [tuple(x.shape) for x in leaves][:5]
        raise ValueError(
            "`task_grads` must have a leading task axis T on every leaf, shape (T, ...); "
            f"got leaf shapes {found}."
        )
    if not all(x.is_floating_point() for x in leaves):
        raise ValueError("`task_grads` must be floating point; got an integer tensor.")
    return int(sizes.pop())


def gramian(task_grads: PyTree, dtype: torch.dtype | None = None) -> Tensor:
    """``G = J Jᵀ`` ``(T, T)``, summed leaf by leaf (no concatenated ``J`` is built).

    The products are accumulated in the gradients' dtype, at least float32 (a float16 Gramian
    overflows once ``‖g‖ ≳ 256``, as under loss scaling); ``dtype`` is that of the result (by
    default the accumulation dtype). ``J`` is divided by a power of two ``s`` near its largest
    entry before the products and ``G`` multiplied by ``s²`` after (both exact), so finite
    gradients of any size give a finite ``G`` whenever it fits in ``dtype`` (no overflow at
    1e19 or underflow at 1e-22 in float32). That scaling is applied where it is free (eager on
    a CPU, checked from the plain product) and to widened float16/bfloat16 gradients; traced
    (``vmap``, ``torch.compile``) or on an accelerator, float32/float64 products are not
    scaled (a copy of ``J`` per call, 2.3× PCGrad's time in a 4-member vmap), so entries beyond
    ~1e18 give an inf ``G`` (NaN weights: the step is flagged) and below ~1e-20 a coarse one.
    Non-finite gradients give a non-finite ``G``.

    Float32 gradients are not widened to float64: that would double the memory traffic of the
    step's costliest reduction (4× slower at T = 16 on a CPU). The price is a relative error of
    about ``√P ε₃₂`` in ``G``, which singular Gramians amplify in the weights (see the
    aggregators' float32 tolerances); pass float64 gradients for a float64 Gramian.
    """
    leaves = tree.leaves(task_grads)
    blocks = [x if x.dim() == 2 else einops.rearrange(x, "tasks ... -> tasks (...)")
              for x in leaves]
    accumulate = _result_dtype(blocks[0].dtype)
    dtype = accumulate if dtype is None else dtype
    widened = blocks[0].dtype != accumulate  # float16/bfloat16: the copy is made anyway
    blocks = [b.to(accumulate) for b in blocks]
    plain = _plain_gramian(blocks)
    if plain is not None:
        return plain.to(dtype)
    if not widened and not readable(blocks[0]):
        # Traced (vmap, compile) or on an accelerator, scaling would cost a copy of J on
        # every call; float32 products overflow only for entries beyond ~1e18, where the
        # Gramian turns inf and the step is flagged non-finite rather than silently wrong.
        return sum_of_products(blocks).to(dtype)
    extremes = [torch.stack(torch.aminmax(b)) if b.numel() else b.new_zeros(2) for b in blocks]
    largest = torch.cat(extremes).abs().amax()
    # The power of two at or just above the largest entry (1 for 0, inf or NaN): exact scaling.
    scale = torch.ldexp(torch.ones_like(largest), torch.frexp(largest)[1])
    scaled = sum_of_products([b / scale for b in blocks])
    scale = scale.to(dtype)
    return scaled.to(dtype) * scale * scale


# A Gramian whose largest diagonal entry lies in this range cannot have overflowed (partial
# sums of gᵢ·gⱼ are bounded by those of the diagonal) nor lost precision to underflow.
_PLAIN_RANGE = (2.0**-80, 2.0**100)


def _plain_gramian(blocks: list[Tensor]) -> Tensor | None:
    """``J Jᵀ`` without scaling when it can be checked for free (eager, on a CPU) and is
    accurate; ``None`` otherwise (traced, on an accelerator, or out of :data:`_PLAIN_RANGE`).
    Scaling costs a copy of ``J``, 2.5× the time of the products alone."""
    if not readable(blocks[0]):
        return None
    gram = sum_of_products(blocks)
    top = float(gram.diagonal().amax()) if gram.numel() else 1.0
    return gram if _PLAIN_RANGE[0] < top < _PLAIN_RANGE[1] else None


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def combine(weights: Tensor, task_grads: PyTree) -> PyTree:
    """``Jᵀ w``: the weighted sum over the task axis, leaf by leaf."""

    def weighted_sum(x: Tensor) -> Tensor:
        w = weights.to(x.dtype)
        return w @ x if x.dim() == 2 else (w @ x.reshape(x.shape[0], -1)).reshape(x.shape[1:])

    return tree.map(weighted_sum, task_grads)


def from_weighting(
    init: InitFn,
    weights: WeightsFn,
    *,
    needs_grads_dtype: bool = False,
    batched: BatchedWeights | None = None,
) -> Aggregator:
    """An aggregator that returns ``Jᵀ w`` with ``w`` from ``weights(J Jᵀ)``.

    ``update`` hands ``weights`` a float64 Gramian (:func:`gramian`): the weights come from
    the gradients to the precision the Gramian's dtype allows, whatever the gradients' size.
    A weighting whose tolerances follow the gradients' precision (a rank cutoff of ``100 ε``)
    sets ``needs_grads_dtype``: it then also gets ``grads_dtype=``, the gradients' dtype. A
    stateless, keyless weighting may pass ``batched`` (plain Gramians ``(K, T, T) -> (K, T)``
    weights) to run whole under ``vmap`` on a CPU (:mod:`._member_batch`).

    Non-finite Gramians (inf or NaN gradients) give NaN weights, and the state is left as it
    was: no error is raised, so that a step with overflowed gradients can be skipped (as loss
    scalers do) and one diverged member of a ``vmap`` batch does not stop the others.
    """
    checked = _finite_weighting(weights)
    on_members = None if batched is None else member_update(batched)

    def update(task_grads: PyTree, state: AggregatorState, *, key: Tensor | None = None):
        num_tasks_of(task_grads)
        direction = None if on_members is None else on_members(task_grads)
        if direction is not None:
            return direction, state
        gram = gramian(task_grads, torch.float64)
        if needs_grads_dtype:
            dtype = tree.leaves(task_grads)[0].dtype
            w, state = checked(gram, state, key=key, grads_dtype=dtype)
        else:
            w, state = checked(gram, state, key=key)
        return combine(w, task_grads), state

    return Aggregator(init, update, checked)


def _finite_weighting(weights: WeightsFn) -> WeightsFn:
    """``weights`` that returns NaN weights and the old state for a non-finite Gramian."""

    def checked(gramian: Tensor, state: AggregatorState, *, key: Tensor | None = None, **kwargs):
        check_gramian(gramian)
        if readable(gramian):  # eager CPU: one read decides (a finite sum: all finite)
            if math.isfinite(float(gramian.sum())) or bool(torch.isfinite(gramian).all()):
                return weights(gramian, state, key=key, **kwargs)
            eye = torch.eye(gramian.shape[-1], dtype=gramian.dtype, device=gramian.device)
            w, _ = weights(eye, state, key=key, **kwargs)  # its argument checks still apply
            return torch.full_like(w, torch.nan), state
        finite = torch.isfinite(gramian).all()
        eye = torch.eye(gramian.shape[-1], dtype=gramian.dtype, device=gramian.device)
        safe = torch.where(finite, gramian, eye)
        w, new_state = weights(safe, state, key=key, **kwargs)
        w = torch.where(finite, w, torch.nan)
        return w, tree.map(lambda new, old: _keep(finite, new, old), new_state, state)

    return checked


def _keep(finite: Tensor, new: Any, old: Any) -> Any:
    """``new`` where ``finite``, else ``old`` (for the tensors of a state)."""
    return torch.where(finite, new, old.to(new)) if isinstance(new, Tensor) else new


def check_gramian(gram: Tensor) -> int:
    """Raise unless ``gram`` is a square ``(T, T)`` floating tensor; return ``T``."""
    if not isinstance(gram, Tensor) or gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        found = tuple(gram.shape) if isinstance(gram, Tensor) else type(gram).__name__
        raise ValueError(f"`gramian` must be a square matrix of shape (T, T); got {found}.")
    return int(gram.shape[0])


def require_key(key: Tensor | None, method: str) -> Tensor:
    """Randomised methods take their randomness from the key only."""
    if key is None:
        raise ValueError(f"`{method}` is randomised: pass `key=` (from fm.random); got None.")
    return key
