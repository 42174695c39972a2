"""Loss weightings: per-task losses ``(T,)`` -> task weights ``(T,)``, with explicit state.

A weighting is ``Weighting(init, weights)``: ``state = init(num_tasks)``, then every step
``w, state = weights(losses, state, key=key, grad_norms=grad_norms)``; the train step scales
the per-task losses (or gradients) by ``w``, held constant. Everything is pure torch and
runs under ``torch.func.vmap`` (K MTL models, each with its own weighting state).

Example:
    >>> import funcmtl as fm
    >>> losses = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    >>> wt = fm.weightings.get("uncertainty", lr=0.01)
    >>> state = wt.init(3)
    >>> w, state = wt.weights(losses.detach(), state)
    >>> w
    tensor([1., 1., 1.])
    >>> total = (w * losses).sum()
"""

from funcmtl.weightings._base import EmptyState, Weighting
from funcmtl.weightings._dwa import DwaState, dwa
from funcmtl.weightings._equal import equal
from funcmtl.weightings._famo import FamoState, famo
from funcmtl.weightings._geometric_mean import geometric_mean
from funcmtl.weightings._gradnorm import GradNormState, gradnorm
from funcmtl.weightings._imtl_l import ImtlLState, imtl_l
from funcmtl.weightings._registry import (
    Method,
    describe,
    get,
    method,
    names,
    options,
    parse,
    specs,
)
from funcmtl.weightings._rlw import rlw
from funcmtl.weightings._uncertainty import UncertaintyState, uncertainty

__all__ = [
    "DwaState",
    "EmptyState",
    "FamoState",
    "GradNormState",
    "ImtlLState",
    "Method",
    "UncertaintyState",
    "Weighting",
    "describe",
    "dwa",
    "equal",
    "famo",
    "geometric_mean",
    "get",
    "gradnorm",
    "imtl_l",
    "method",
    "names",
    "options",
    "parse",
    "specs",
    "rlw",
    "uncertainty",
]
