"""Look weightings up by name: ``get(name, **options)``, ``names()``, ``describe(name)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from funcmtl.weightings._base import Weighting
from funcmtl.weightings._dwa import dwa
from funcmtl.weightings._equal import equal
from funcmtl.weightings._famo import famo
from funcmtl.weightings._geometric_mean import geometric_mean
from funcmtl.weightings._gradnorm import gradnorm
from funcmtl.weightings._imtl_l import imtl_l
from funcmtl.weightings._rlw import rlw
from funcmtl.weightings._uncertainty import uncertainty


class MethodInfo(NamedTuple):
    """One registered weighting: its factory, a one-line summary, its paper, and which of
    ``grad_norms`` / ``key`` its ``weights`` needs (so a train step computes only those)."""

    name: str
    factory: Callable[..., Weighting]
    summary: str
    paper: str  # "Authors, Title, Year"
    url: str
    needs_grad_norms: bool = False  # `weights` must be given `grad_norms=`
    needs_key: bool = False  # `weights` must be given `key=`


_METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo(
            "equal",
            equal,
            "Weight 1 for every task (sum of the task losses).",
            "Caruana, Multitask Learning, 1997",
            "https://doi.org/10.1023/A:1007379606734",
        ),
        MethodInfo(
            "uncertainty",
            uncertainty,
            "Learnable log-variances s; minimise Σ e^{-s}L + s, weights e^{-s}.",
            "Kendall, Gal & Cipolla, Multi-Task Learning Using Uncertainty to Weigh Losses "
            "for Scene Geometry and Semantics, 2018",
            "https://arxiv.org/abs/1705.07115",
        ),
        MethodInfo(
            "dwa",
            dwa,
            "Dynamic Weight Average: T·softmax of the last two periods' loss ratios / τ.",
            "Liu, Johns & Davison, End-to-End Multi-Task Learning with Attention, 2019",
            "https://arxiv.org/abs/1803.10704",
        ),
        MethodInfo(
            "rlw",
            rlw,
            "Random loss weighting: softmax of a standard normal draw from the key.",
            "Lin, Ye, Xu, Shi & Zhang, Reasonable Effectiveness of Random Weighting: A Litmus "
            "Test for Multi-Task Learning, 2022",
            "https://openreview.net/forum?id=jjtFD8A1Wx",
            needs_key=True,
        ),
        MethodInfo(
            "gradnorm",
            gradnorm,
            "Learn weights so weighted gradient norms track relative training rates.",
            "Chen, Badrinarayanan, Lee & Rabinovich, GradNorm: Gradient Normalization for "
            "Adaptive Loss Balancing in Deep Multitask Networks, 2018",
            "https://proceedings.mlr.press/v80/chen18a.html",
            needs_grad_norms=True,
        ),
        MethodInfo(
            "famo",
            famo,
            "Learn task logits so that all log-losses decrease at an equal rate.",
            "Liu, Feng, Stone & Liu, FAMO: Fast Adaptive Multitask Optimization, 2023",
            "https://arxiv.org/abs/2306.03792",
        ),
        MethodInfo(
            "imtl_l",
            imtl_l,
            "IMTL-L: learnable scales e^{s}; minimise Σ e^{s}L − s, so scaled losses equal 1.",
            "Liu et al., Towards Impartial Multi-task Learning, 2021",
            "https://openreview.net/forum?id=IMPnRXEWpvr",
        ),
        MethodInfo(
            "geometric_mean",
            geometric_mean,
            "Minimise the geometric mean (Π L)^{1/T}: weights GM / (T·L).",
            "Chennupati, Sistu, Yogamani & Rawashdeh, MultiNet++: Multi-Stream Feature "
            "Aggregation and Geometric Loss Strategy for Multi-Task Learning, 2019",
            "https://arxiv.org/abs/1904.08492",
        ),
    )
}


def names() -> list[str]:
    """The registered weighting names, in a stable order."""
    return list(_METHODS)


def info(name: str) -> MethodInfo:
    """The registry entry of ``name`` (factory, one-line summary, paper, link).

    Raises:
        ValueError: if ``name`` is not registered; the message lists the valid names.
    """
    if name not in _METHODS:
        raise ValueError(
            f"Unknown loss weighting {name!r}; valid names are: {', '.join(_METHODS)}."
        )
    return _METHODS[name]


def describe(name: str) -> str:
    """One line for ``funcmtl methods``: the summary, then the paper."""
    entry = info(name)
    return f"{entry.summary} [{entry.paper}]"


def options(name: str) -> dict[str, Any]:
    """The options ``name`` takes, with their defaults (raises for an unknown name)."""
    parameters = inspect.signature(info(name).factory).parameters
    return {p.name: p.default for p in parameters.values()}


def get(name: str, **kwargs: Any) -> Weighting:
    """Build the weighting ``name`` with ``options``, e.g. ``get("dwa", period=50)``.

    Raises:
        ValueError: for an unknown name (listing the valid names) or an option the method
            does not take (listing the options it does take).
    """
    valid = options(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
        raise ValueError(
            f"Loss weighting {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {listed}."
        )
    return info(name).factory(**kwargs)
