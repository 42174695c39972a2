"""``funcmtl methods``: list what the library offers, one line each."""

from __future__ import annotations

import dataclasses
import inspect
from types import ModuleType
from typing import Literal

import funcmtl as fm

Group = Literal[
    "optimizers", "schedules", "transforms", "losses", "metrics", "aggregators", "weightings"
]

_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@dataclasses.dataclass(frozen=True)
class Methods:
    """List every optimizer, transform, schedule, loss, metric, aggregator and loss weighting
    funcmtl provides."""

    group: Group | None = None
    """Only this group; default: all."""


def _public_functions(module: object) -> dict[str, str]:
    return {
        name: summary_line(obj)
        for name in module.__all__
        if inspect.isfunction(obj := getattr(module, name))
    }


def _registered(registry: ModuleType) -> dict[str, str]:
    return {name: registry.describe(name) for name in registry.names()}


def _is_schedule(name: str) -> bool:
    return name.endswith("_schedule") and not name.startswith("scale_by")


def groups() -> dict[str, dict[str, str]]:
    """Every listed name and its one-line description, by group, in a stable order."""
    optim = _public_functions(fm.optim)
    return {
        "optimizers": {n: optim[n] for n in _OPTIMIZERS},
        "schedules": {n: line for n, line in optim.items() if _is_schedule(n)},
        "transforms": {
            n: line for n, line in optim.items() if n not in _OPTIMIZERS and not _is_schedule(n)
        },
        "losses": _public_functions(fm.losses),
        "metrics": _public_functions(fm.metrics),
        "aggregators": _registered(fm.aggregators),
        "weightings": _registered(fm.weightings),
    }


def summary_line(obj: object) -> str:
    """The first paragraph of an object's docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip().removesuffix("::").rstrip(":")


def run(config: Methods) -> int:
    for group, lines in groups().items():
        if config.group not in (None, group):
            continue
        print(f"{group}:")
        for name, line in lines.items():
            print(f"  {name:<30} {line}")
    return 0
