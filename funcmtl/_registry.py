"""Methods by name: a table of factories with a one-line summary and a paper reference each.

:mod:`funcmtl.aggregators` and :mod:`funcmtl.weightings` each build one :class:`Registry`
with :func:`registry` and re-export its functions; ``funcmtl methods`` lists them with
``describe``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from funcmtl._options import Option, parse_all
from funcmtl._options import specs as option_specs


class Method(NamedTuple):
    """One registered method: its factory, what it does in one line, and its paper."""

    name: str
    factory: Callable[..., Any]
    summary: str  # one line
    reference: str  # "Authors, Title, Year. https://..."


class Registry(NamedTuple):
    """The functions that look the methods of one kind up and build them by name."""

    names: Callable[[], list[str]]
    method: Callable[[str], Method]
    options: Callable[[str], dict[str, Any]]
    get: Callable[..., Any]
    describe: Callable[[str], str]
    specs: Callable[[str], list[Option]]
    parse: Callable[[str, Mapping[str, str]], dict[str, Any]]


def registry(kind: str, methods: Iterable[Method]) -> Registry:
    """The registry of ``methods``, listed in the order given.

    Args:
        kind: what a method is, singular and lower case, for error messages: ``"aggregator"``
            gives "one of the known aggregators" and "Aggregator 'x' has no option ...".
        methods: the table.

    Example:
        >>> from funcmtl._registry import Method, registry
        >>> mean = fm.aggregators.mean
        >>> names, method, options, get, describe, specs, parse = registry(
        ...     "aggregator", [Method("mean", mean, "Average of the gradients.", "Caruana, 1997.")]
        ... )
        >>> names(), describe("mean")
        (['mean'], 'Average of the gradients. [Caruana, 1997.]')
    """
    table = {entry.name: entry for entry in methods}

    def names() -> list[str]:
        """The names ``get`` accepts, in a stable order."""
        return list(table)

    def method(name: str) -> Method:
        """The registry entry of ``name``: factory, one-line summary and reference.

        Raises:
            ValueError: if ``name`` is not registered; the message lists the known names.
        """
        if not isinstance(name, str) or name not in table:
            raise ValueError(
                f"`name` must be one of the known {kind}s ({', '.join(table)}); got {name!r}."
            )
        return table[name]

    def options(name: str) -> dict[str, Any]:
        """The keyword options of ``name``'s factory, with their defaults."""
        parameters = inspect.signature(method(name).factory).parameters
        return {p.name: p.default for p in parameters.values()}

    def get(name: str, **kwargs: Any) -> Any:
        """The method ``name`` built with options ``kwargs``, e.g. ``get("gradvac", beta=0.1)``.

        Raises:
            ValueError: for an unknown name (listing the known names) or an option the method
                does not take (listing the options it does take).
        """
        valid = options(name)
        unknown = [option for option in kwargs if option not in valid]
        if unknown:
            raise ValueError(
                f"{kind.capitalize()} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {', '.join(valid) or 'none'}."
            )
        return method(name).factory(**kwargs)

    def describe(name: str) -> str:
        """One line for ``funcmtl methods``: ``"summary [reference]"``."""
        entry = method(name)
        return f"{entry.summary} [{entry.reference}]"

    def specs(name: str) -> list[Option]:
        """``name``'s options with their types, defaults and help (for ``funcmtl methods``)."""
        return option_specs(method(name).factory)

    def parse(name: str, items: Mapping[str, str]) -> dict[str, Any]:
        """Command-line texts ``{option: "0.4"}`` as ``name``'s typed options; an unknown
        option or a value of the wrong type is one line naming what was expected."""
        return parse_all({o.name: o for o in specs(name)}, items, f"{kind} {name!r}")

    return Registry(names, method, options, get, describe, specs, parse)
