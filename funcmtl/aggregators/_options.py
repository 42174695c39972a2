"""Checks of the aggregators' numeric options: a number, or a 0-dim tensor for a sweep.

A 0-dim tensor option lets one ``vmap`` build a batch of aggregators that differ only in that
option (``vmap(lambda c, g: cagrad(c=c).update(g, s))(cs, grads)``): the methods then use it
in tensor arithmetic only, never in a Python branch. Its value is checked like a number's
where reading it is free (a plain CPU tensor outside any transform); inside ``vmap``, under
``torch.compile`` or on an accelerator it is not read, since that would need ``.item()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from funcmtl.optim._checks import _readable as readable


def check_option(name: str, value: Any, expected: str, inside: Callable[[float], bool]) -> None:
    """Raise ``ValueError`` unless ``value`` is a number (not a bool) or a 0-dim floating
    tensor for which ``inside`` holds; ``expected`` says what is allowed, e.g. "a number ≥ 0"."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or not value.is_floating_point():
            raise ValueError(
                f"`{name}` must be {expected} or a 0-dim floating tensor; got a tensor of shape "
                f"{tuple(value.shape)} and dtype {value.dtype}."
            )
        if not readable(value) or inside(float(value)):
            return
    elif not isinstance(value, bool) and isinstance(value, (int, float)) and inside(value):
        return
    raise ValueError(f"`{name}` must be {expected}; got {value!r}.")


def as_option(value: float | Tensor) -> float | Tensor:
    """A number as a ``float``; a tensor as it is (it may be batched by ``vmap``)."""
    return value if isinstance(value, Tensor) else float(value)
