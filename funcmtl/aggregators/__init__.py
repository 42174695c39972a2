"""Aggregators: per-task gradients ``[T, ...]`` -> one update direction.

Each method is a factory returning an :class:`Aggregator` ``(init, update, weights)``; see
:mod:`funcmtl.aggregators._base` for the contract. Pick one by name with :func:`get`, e.g.
``get("graddrop", leak=0.1)``; :func:`names` lists them and :func:`describe` says what each
does.

Example:
    >>> import torch, funcmtl as fm
    >>> agg = fm.aggregators.upgrad()
    >>> grads = {"w": torch.randn(3, 4, 5), "b": torch.randn(3, 5)}  # 3 tasks
    >>> direction, state = agg.update(grads, agg.init(3), key=fm.random.key(0))
    >>> direction["w"].shape
    torch.Size([4, 5])
"""

from funcmtl.aggregators._aligned_mtl import aligned_mtl
from funcmtl.aggregators._base import Aggregator, combine, from_weighting, gramian
from funcmtl.aggregators._cagrad import cagrad
from funcmtl.aggregators._config import config
from funcmtl.aggregators._dualproj import dualproj
from funcmtl.aggregators._graddrop import graddrop
from funcmtl.aggregators._gradvac import gradvac
from funcmtl.aggregators._imtl_g import imtl_g
from funcmtl.aggregators._mean import mean, sum
from funcmtl.aggregators._mgda import mgda
from funcmtl.aggregators._nash_mtl import nash_mtl
from funcmtl.aggregators._pcgrad import pcgrad
from funcmtl.aggregators._registry import (
    Method,
    describe,
    get,
    method,
    names,
    options,
    parse,
    specs,
)
from funcmtl.aggregators._upgrad import upgrad

__all__ = [
    "Aggregator",
    "Method",
    "aligned_mtl",
    "cagrad",
    "combine",
    "config",
    "describe",
    "dualproj",
    "from_weighting",
    "get",
    "graddrop",
    "gradvac",
    "gramian",
    "imtl_g",
    "mean",
    "method",
    "mgda",
    "names",
    "nash_mtl",
    "options",
    "parse",
    "specs",
    "pcgrad",
    "sum",
    "upgrad",
]
