"""Arithmetic over lists of leaves, fused with ``torch._foreach_*`` when that is allowed.

Every transform works on the flat leaf lists of its trees. ``torch._foreach_*`` kernels
process a whole list in a few launches, which is much faster than one op per leaf when a
model has many leaves, but they have no batching rule for ``torch.func.vmap`` and do not see
through ``torch.func.grad``. So each op here comes as a pair: a foreach implementation used
when every tensor involved (leaves and tensor hyperparameters) is a plain tensor, and a
per-leaf implementation used as soon as one of them is functorch-wrapped. :func:`leafwise`
is the one place that makes that choice.

Hyperparameters (``s`` below) are Python numbers or 0-dim tensors; under ``vmap`` over a
sweep a 0-dim tensor is a batched scalar, which only the per-leaf path can handle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor

Scalar = float | Tensor


def use_foreach(*args: Any) -> bool:
    """True when no tensor in ``args`` (scalars, tensors, lists of tensors) is functorch-wrapped.

    Inside ``vmap``/``grad`` some leaves may be wrapped and others not (an argument mapped
    with ``in_dims=None``), so every leaf is looked at, not only the first. Under
    ``torch.compile`` the per-leaf ops are traced (the compiler fuses them anyway).
    """
    if torch.compiler.is_compiling():
        return False
    for arg in args:
        if isinstance(arg, list):
            if any(map(is_functorch_wrapped_tensor, arg)):
                return False
        elif isinstance(arg, Tensor) and is_functorch_wrapped_tensor(arg):
            return False
    return True


def _scalar_like(s: Any, like: Tensor) -> Any:
    # Fused kernels want a tensor scalar on the leaves' device and in their dtype (per-leaf
    # ops cast it the same way internally, so both paths compute alike).
    if isinstance(s, Tensor) and s.dim() == 0:
        return s.to(device=like.device, dtype=like.dtype)
    return s


def leafwise(fused: Callable[..., Any]) -> Callable[[Callable[..., Tensor]], Callable[..., list]]:
    """Declare a list op by its fused form ``fused(*args)`` and its per-leaf form.

    The decorated function takes one leaf per list argument (scalars are passed as they are)
    and returns one tensor. The resulting op takes lists and returns a new list; it never
    modifies its inputs.
    """

    def decorate(per_leaf: Callable[..., Tensor]) -> Callable[..., list]:
        @functools.wraps(per_leaf)
        def op(*args: Any) -> list[Tensor]:
            lists = [a for a in args if isinstance(a, list)]
            if not lists[0]:
                return []
            if use_foreach(*args):
                like = lists[0][0]
                return list(fused(*(_scalar_like(a, like) for a in args)))
            n = len(lists[0])
            columns = [a if isinstance(a, list) else [a] * n for a in args]
            return [per_leaf(*row) for row in zip(*columns, strict=True)]

        return op

    return decorate


def _fused_add(xs: list, ys: list, alpha: Scalar) -> list:
    if isinstance(alpha, Tensor):
        return torch._foreach_add(xs, torch._foreach_mul(ys, alpha))
    return torch._foreach_add(xs, ys, alpha=alpha)


@leafwise(_fused_add)
def add(x: Tensor, y: Tensor, alpha: Scalar) -> Tensor:
    """``x + alpha * y``."""
    return x + alpha * y if isinstance(alpha, Tensor) else torch.add(x, y, alpha=alpha)


@leafwise(torch._foreach_mul)
def mul(x: Tensor, s: Scalar) -> Tensor:
    """``x * s``."""
    return x * s


@leafwise(torch._foreach_add)
def add_scalar(x: Tensor, s: Scalar) -> Tensor:
    """``x + s``."""
    return x + s


@leafwise(torch._foreach_div)
def div(x: Tensor, y: Tensor | Scalar) -> Tensor:
    """``x / y`` for a leaf ``y`` or a scalar ``y``."""
    return x / y


@leafwise(torch._foreach_sqrt)
def sqrt(x: Tensor) -> Tensor:
    """``√x``."""
    return torch.sqrt(x)


@leafwise(torch._foreach_sign)
def sign(x: Tensor) -> Tensor:
    """``sign(x)`` (0 at 0)."""
    return torch.sign(x)


@leafwise(torch._foreach_norm)
def norm(x: Tensor) -> Tensor:
    """The L2 norm of each leaf, as a 0-dim tensor."""
    return torch.linalg.vector_norm(x)


def _fused_lerp(xs: list, ys: list, weight: Scalar) -> list:
    if isinstance(weight, Tensor):
        return torch._foreach_add(xs, torch._foreach_mul(torch._foreach_sub(ys, xs), weight))
    return torch._foreach_lerp(xs, ys, weight)


@leafwise(_fused_lerp)
def lerp(x: Tensor, y: Tensor, weight: Scalar) -> Tensor:
    """``x + weight * (y - x)``: an exponential moving average step towards ``y``."""
    return torch.lerp(x, y, weight.to(x.dtype) if isinstance(weight, Tensor) else weight)


def _fused_addcmul(xs: list, ys: list, zs: list, value: Scalar) -> list:
    if isinstance(value, Tensor):
        return torch._foreach_add(xs, torch._foreach_mul(torch._foreach_mul(ys, zs), value))
    return torch._foreach_addcmul(xs, ys, zs, value=value)


@leafwise(_fused_addcmul)
def addcmul(x: Tensor, y: Tensor, z: Tensor, value: Scalar) -> Tensor:
    """``x + value * y * z``."""
    if isinstance(value, Tensor):
        return x + value * (y * z)
    return torch.addcmul(x, y, z, value=value)


def ema_square(v: list, g: list, decay: Scalar) -> list:
    """``decay * v + (1 - decay) * g²``: the running average of squared gradients."""
    return addcmul(mul(v, decay), g, g, 1 - decay)
