"""``funcmtl methods``: list what the library offers, one line each; ``funcmtl methods NAME``:
one aggregator's or loss weighting's options, with types, defaults and its paper."""

from __future__ import annotations

import dataclasses
import inspect
import re
from types import ModuleType
from typing import Literal

import tyro

import funcmtl as fm
from funcmtl._options import describe_type

Group = Literal[
    "optimizers", "schedules", "transforms", "losses", "metrics", "aggregators", "weightings"
]

_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@dataclasses.dataclass(frozen=True)
class Methods:
    """List every optimizer, transform, schedule, loss, metric, aggregator and loss weighting
    funcmtl provides."""

    name: tyro.conf.Positional[str | None] = None
    """An aggregator or loss weighting: show its options (types, defaults) and paper."""

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


def method_help(name: str) -> str:
    """What ``funcmtl methods NAME`` prints: summary, paper, and a table of the options."""
    kinds = (("aggregator", fm.aggregators), ("loss weighting", fm.weightings))
    found = [(kind, registry) for kind, registry in kinds if name in registry.names()]
    if not found:
        raise ValueError(
            f"unknown method {name!r}; expected an aggregator {fm.aggregators.names()} or a "
            f"loss weighting {fm.weightings.names()}."
        )
    kind, registry = found[0]
    entry = registry.method(name)
    lines = [f"{name} ({kind}): {entry.summary}", f"  paper: {entry.reference}", ""]
    specs = registry.specs(name)
    if not specs:
        lines.append("  no options")
    for option in specs:
        lines.append(f"  {option.name}: {describe_type(option.type)} "
                     f"(type {option.type}), default {option.default!r}")
        if option.help:
            lines.append(f"      {_plain(option.help)}")
    usage = " ".join(f"{o.name}={o.default}" for o in specs)
    lines += ["", f"  usage: funcmtl train --method {name}"
              + (f" --method-options {usage}" if usage else "")]
    return "\n".join(lines)


def _plain(text: str) -> str:
    """A docstring's reStructuredText roles and literals as plain text."""
    return re.sub(r":\w+:`([^`]*)`", r"\1", text).replace("``", "")


def run(config: Methods) -> int:
    if config.name is not None:
        print(method_help(config.name))
        return 0
    for group, lines in groups().items():
        if config.group not in (None, group):
            continue
        print(f"{group}:")
        for name, line in lines.items():
            print(f"  {name:<30} {line}")
    return 0
