"""Solvers that branch on values, run once on a plain batch under ``vmap`` on a CPU.

The eager solvers (active sets with certificates, Newton with an exit once converged) read
tensor values to decide what to do next, which ``vmap`` forbids. :func:`plain_batch` wraps a
function that already accepts leading batch dimensions in a ``torch.autograd.Function``
whose ``vmap`` rule moves the members' axis to the front and calls it once on the plain
tensors: the branching is then over the whole batch of members, e.g. the interior-point
fallback runs only for the problems no member's certificate covers. Outside ``vmap`` (or
on an accelerator, where reading values would be a sync) the function is called as it is.
The results are not differentiable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import (
    _add_batch_dim,
    _unwrap_batched,
    is_batchedtensor,
    is_functorch_wrapped_tensor,
    maybe_get_level,
)


def traced_on_cpu(*tensors: Tensor) -> bool:
    """CPU tensors of which one is wrapped by a ``torch.func`` transform (``vmap``), outside
    ``torch.compile`` (whose graphs cannot branch on values)."""
    if torch.compiler.is_compiling():
        return False
    return all(t.device.type == "cpu" for t in tensors) and any(
        is_functorch_wrapped_tensor(t) for t in tensors
    )


def plain_batch(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``fn(*args) -> Tensor``, batched over leading dimensions, with the vmap rule above."""

    class Rule(torch.autograd.Function):
        generate_vmap_rule = False

        @staticmethod
        def forward(*args: Any) -> Tensor:
            return fn(*args)

        @staticmethod
        def setup_context(ctx, inputs, output) -> None:
            del ctx, inputs, output

        @staticmethod
        def backward(ctx, *grads: Tensor):
            raise RuntimeError(f"{fn.__name__} (an aggregator's solver) is not differentiable")

        @staticmethod
        def vmap(info, in_dims, *args: Any):
            moved = [
                arg.movedim(dim, 0) if dim is not None
                else arg.expand(info.batch_size, *arg.shape) if isinstance(arg, Tensor)
                else arg
                for arg, dim in zip(args, in_dims, strict=True)
            ]
            return Rule.apply(*moved), 0

    def call(*args: Any) -> Tensor:
        if traced_on_cpu(*(a for a in args if isinstance(a, Tensor))):
            direct = _unwrapped_call(fn, args)
            return direct if direct is not None else Rule.apply(*args)
        return fn(*args)

    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def one_vmap_level(*tensors: Tensor) -> bool:
    """Whether the wrapped tensors are plain tensors batched by one and the same ``vmap``
    level (what :func:`plain_batch` unwraps directly)."""
    wrapped = [t for t in tensors if is_functorch_wrapped_tensor(t)]
    if not wrapped or len({maybe_get_level(t) for t in wrapped}) != 1:
        return False
    level = maybe_get_level(wrapped[0])
    for t in wrapped:
        if not is_batchedtensor(t):
            return False
        inner, dim = _unwrap_batched(t, level)
        if dim is None or is_functorch_wrapped_tensor(inner):
            return False
    return True


def _unwrapped_call(fn: Callable[..., Tensor], args: tuple) -> Tensor | None:
    """The rule without ``autograd.Function``'s dispatch (~0.15 ms a call): when every wrapped
    argument is a plain tensor batched by one ``vmap`` level, unwrap them, call ``fn`` on the
    members' plain batch and re-wrap its result; ``None`` for anything else (nested
    transforms), which takes the ``autograd.Function`` path."""
    wrapped = [isinstance(a, Tensor) and is_functorch_wrapped_tensor(a) for a in args]
    levels = {maybe_get_level(a) for a, w in zip(args, wrapped, strict=True) if w}
    if len(levels) != 1:
        return None
    level = levels.pop()
    plain: list[Any] = []
    for arg, is_wrapped in zip(args, wrapped, strict=True):
        if is_wrapped:
            if not is_batchedtensor(arg):
                return None
            inner, dim = _unwrap_batched(arg, level)
            if dim is None or is_functorch_wrapped_tensor(inner):
                return None
            arg = inner.movedim(dim, 0)
        plain.append(arg)
    size = next(p.shape[0] for p, w in zip(plain, wrapped, strict=True) if w)
    plain = [
        p.expand(size, *p.shape) if isinstance(p, Tensor) and not w else p
        for p, w in zip(plain, wrapped, strict=True)
    ]
    with torch.no_grad():  # the solvers are not differentiable (as the rule's backward says)
        out = fn(*plain)
    return _add_batch_dim(out, 0, level)
