"""The aggregators' numeric options: a number, or a 0-dim tensor for a sweep.

A 0-dim tensor option lets one ``vmap`` build a batch of aggregators that differ only in that
option (``vmap(lambda c, g: cagrad(c=c).update(g, s))(cs, grads)``): the methods then use it
in tensor arithmetic only, never in a Python branch. Its value is checked like a number's
(:func:`funcmtl.optim._checks.check_hyperparameter`) where reading it is free.
"""

from __future__ import annotations

from torch import Tensor


def as_option(value: float | Tensor) -> float | Tensor:
    """A number as a ``float``; a tensor as it is (it may be batched by ``vmap``)."""
    return value if isinstance(value, Tensor) else float(value)
