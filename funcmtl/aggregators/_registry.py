"""Aggregators by name: ``get("pcgrad")``, ``names()``, ``describe(name)`` (for the CLI)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from funcmtl.aggregators._aligned_mtl import aligned_mtl
from funcmtl.aggregators._base import Aggregator
from funcmtl.aggregators._cagrad import cagrad
from funcmtl.aggregators._config import config
from funcmtl.aggregators._dualproj import dualproj
from funcmtl.aggregators._graddrop import graddrop
from funcmtl.aggregators._gradvac import gradvac
from funcmtl.aggregators._imtl_g import imtl_g
from funcmtl.aggregators._mean import mean
from funcmtl.aggregators._mean import sum as sum_
from funcmtl.aggregators._mgda import mgda
from funcmtl.aggregators._nash_mtl import nash_mtl
from funcmtl.aggregators._pcgrad import pcgrad
from funcmtl.aggregators._upgrad import upgrad


class MethodInfo(NamedTuple):
    """One registered aggregator: what it does, where it comes from, and its options."""

    name: str
    summary: str  # one line
    reference: str  # authors, title, year, link
    options: dict[str, Any]  # option name -> default value


class _Entry(NamedTuple):
    factory: Callable[..., Aggregator]
    summary: str
    reference: str


_METHODS: dict[str, _Entry] = {
    "mean": _Entry(
        mean,
        "Average of the task gradients (equal loss weights).",
        "Caruana, Multitask Learning, 1997. https://link.springer.com/article/10.1023/A:1007379606734",
    ),
    "sum": _Entry(
        sum_,
        "Sum of the task gradients (gradient of the summed loss).",
        "Caruana, Multitask Learning, 1997. https://link.springer.com/article/10.1023/A:1007379606734",
    ),
    "pcgrad": _Entry(
        pcgrad,
        "Project each gradient onto the normal plane of the ones it conflicts with; sum.",
        "Yu et al., Gradient Surgery for Multi-Task Learning, 2020. "
        "https://arxiv.org/abs/2001.06782",
    ),
    "graddrop": _Entry(
        graddrop,
        "Per coordinate, keep only the positive or only the negative gradients (random sign).",
        "Chen et al., Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
        "Dropout, 2020. https://arxiv.org/abs/2010.06808",
    ),
    "mgda": _Entry(
        mgda,
        "Minimum-norm point of the convex hull of the task gradients (Pareto-stationary step).",
        "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018. "
        "https://arxiv.org/abs/1810.04650",
    ),
    "cagrad": _Entry(
        cagrad,
        "Maximise the worst task improvement within a ball around the average gradient.",
        "Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, 2021. "
        "https://arxiv.org/abs/2110.14048",
    ),
    "gradvac": _Entry(
        gradvac,
        "Raise each pairwise gradient cosine to an EMA-tracked target; sum.",
        "Wang et al., Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
        "Massively Multilingual Models, 2021. https://openreview.net/forum?id=F1vEjWK-lH_",
    ),
    "imtl_g": _Entry(
        imtl_g,
        "Combination with equal projections onto every unit task gradient (closed form).",
        "Liu et al., Towards Impartial Multi-task Learning, 2021. "
        "https://openreview.net/forum?id=IMPnRXEWpvr",
    ),
    "aligned_mtl": _Entry(
        aligned_mtl,
        "Align the gradients to an orthogonal set of equal norms (smallest singular value); sum.",
        "Senushkin et al., Independent Component Alignment for Multi-Task Learning, 2023. "
        "https://arxiv.org/abs/2305.19000",
    ),
    "upgrad": _Entry(
        upgrad,
        "Average of the task gradients each projected onto the dual cone of all of them.",
        "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024. "
        "https://arxiv.org/abs/2406.16232",
    ),
    "dualproj": _Entry(
        dualproj,
        "Project the average gradient onto the dual cone of the task gradients.",
        "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024. "
        "https://arxiv.org/abs/2406.16232",
    ),
    "nash_mtl": _Entry(
        nash_mtl,
        "Nash bargaining solution between the tasks over the update direction.",
        "Navon et al., Multi-Task Learning as a Bargaining Game, 2022. "
        "https://arxiv.org/abs/2202.01017",
    ),
    "config": _Entry(
        config,
        "Direction with equal cosine to every task gradient (pseudo-inverse of unit gradients).",
        "Liu et al., ConFIG: Towards Conflict-free Training of Physics Informed Neural "
        "Networks, 2024. https://arxiv.org/abs/2408.11104",
    ),
}


def names() -> list[str]:
    """The names :func:`get` accepts, in a stable order."""
    return list(_METHODS)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str) or name not in _METHODS:
        raise ValueError(
            f"`name` must be one of the known aggregators ({', '.join(_METHODS)}); got {name!r}."
        )
    return _METHODS[name]


def _options(factory: Callable[..., Aggregator]) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def describe(name: str) -> MethodInfo:
    """One line of description, the paper reference and the options (with defaults) of
    aggregator ``name``."""
    entry = _entry(name)
    return MethodInfo(name, entry.summary, entry.reference, _options(entry.factory))


def get(name: str, **options: Any) -> Aggregator:
    """The aggregator called ``name``, built with ``options``.

    Args:
        name: one of :func:`names`, e.g. ``"pcgrad"``.
        **options: keyword options of that method's factory, e.g. ``beta=0.1`` for
            ``"gradvac"``.

    Returns:
        An :class:`Aggregator`.

    Raises:
        ValueError: for an unknown name, or an option the method does not take.

    Example:
        >>> import funcmtl as fm
        >>> agg = fm.aggregators.get("graddrop", leak=0.1)
    """
    entry = _entry(name)
    valid = _options(entry.factory)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        allowed = ", ".join(valid) if valid else "none"
        raise ValueError(
            f"Aggregator {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {allowed}."
        )
    return entry.factory(**options)
