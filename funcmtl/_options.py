"""A method's options as typed specs read from its factory: name, type, default and help.

The type is the factory's annotation (``float | Tensor``, ``Literal["none", "l2"]``, ``int``),
the help is the option's entry in the docstring's ``Args:`` section. :func:`parse` turns the
text of a command-line option (``c=0.4``) into a value of that type, or says in one line what
was expected.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch


class Option(NamedTuple):
    """One keyword option of a method's factory."""

    name: str
    type: str  # the annotation as written, e.g. "float | Tensor"
    default: Any
    help: str  # its docstring entry, on one line ("" if none)


def specs(factory: Callable[..., Any]) -> list[Option]:
    """The options of ``factory``, in signature order."""
    helps = _arg_helps(inspect.getdoc(factory) or "")
    return [
        Option(p.name, _annotation(p.annotation), p.default, helps.get(p.name, ""))
        for p in inspect.signature(factory).parameters.values()
    ]


def parse(option: Option, text: str, owner: str) -> Any:
    """``text`` as a value of ``option.type``; ``owner`` names the method in the message.

    ``None``/``none`` is ``None`` where the type allows it; a ``Literal`` takes one of its
    values; ``int`` an integer; ``float`` any number; ``bool`` true/false; ``str`` any text;
    ``float | Tensor`` a number (a 0-dim option); ``Tensor`` alone a list of numbers such as
    ``(1, 2, 1)``.
    """
    allowed = [part.strip() for part in _split_union(option.type)]
    if text in ("None", "none") and "None" in allowed:
        return None
    for part in allowed:
        choices = _literal_choices(part)
        if choices is not None and text in choices:
            return text
    literal = _literal(text)
    if "bool" in allowed and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "int" in allowed and isinstance(literal, int) and not isinstance(literal, bool):
        return literal
    if "float" in allowed and isinstance(literal, int | float) and not isinstance(literal, bool):
        return float(literal)
    if "Tensor" in allowed and _numbers(literal):  # e.g. pref_vector=(1,2,1)
        return torch.tensor([float(x) for x in literal])
    if "str" in allowed or option.type == "":
        return text if literal is None or isinstance(literal, str) else literal
    raise ValueError(
        f"{owner} option `{option.name}` must be {describe_type(option.type)}; got {text!r}."
    )


def describe_type(annotation: str) -> str:
    """``"float | Tensor | None"`` -> ``"a number or None"`` (what a user can type)."""
    words = []
    for part in _split_union(annotation):
        part = part.strip()
        choices = _literal_choices(part)
        if choices is not None:
            words.append("one of " + ", ".join(map(repr, choices)))
        elif part == "float" or (part == "Tensor" and "float" in annotation):
            words.append("a number")
        elif part == "Tensor":
            words.append("a list of numbers")
        elif part == "int":
            words.append("an integer")
        elif part == "bool":
            words.append("true or false")
        elif part == "str":
            words.append("a string")
        elif part == "None":
            words.append("None")
    unique = list(dict.fromkeys(words))
    return " or ".join(unique) if unique else annotation


def parse_all(options: Mapping[str, Option], items: Mapping[str, str], owner: str) -> dict:
    """Every ``name -> text`` of ``items`` parsed; an unknown name lists the valid ones."""
    unknown = [name for name in items if name not in options]
    if unknown:
        valid = ", ".join(f"{o.name} ({describe_type(o.type)})" for o in options.values())
        raise ValueError(
            f"{owner} has no option {', '.join(map(repr, unknown))}; its options are: "
            f"{valid or 'none'}."
        )
    return {name: parse(options[name], text, owner) for name, text in items.items()}


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _split_union(annotation: str) -> list[str]:
    """Split on the ``|`` outside brackets."""
    parts, depth, current = [], 0, ""
    for char in annotation:
        depth += char in "[(" and 1 or char in "])" and -1 or 0
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current] if annotation else []


def _literal_choices(part: str) -> tuple[str, ...] | None:
    match = re.fullmatch(r"Literal\[(.*)\]", part.strip())
    if match is None:
        return None
    return tuple(ast.literal_eval(f"({match.group(1)},)"))


def _numbers(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0 and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    )


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _arg_helps(doc: str) -> dict[str, str]:
    """``{name: help}`` from a Google-style ``Args:`` section."""
    helps: dict[str, str] = {}
    lines = doc.splitlines()
    if "Args:" not in [line.strip() for line in lines]:
        return helps
    start = [line.strip() for line in lines].index("Args:") + 1
    current = None
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: (.*)$", line)
        if match:
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current and line.startswith(" " * 8):
            helps[current] += " " + line.strip()
    return helps
