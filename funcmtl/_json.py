"""JSON as the run directory writes it: tensors as numbers, non-finite floats as strings.

Non-finite floats are written as the JSON strings ``"nan"``, ``"inf"`` and ``"-inf"`` (bare
``NaN`` is not JSON) and :func:`decode` turns them back into floats; 0-dim tensors are written
as numbers, paths as strings and enums as their values.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
import os
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import torch

from funcmtl._atomic import atomic_write

_MISSING = "<missing>"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode(value: Any, where: str) -> Any:
    """``value`` as plain JSON data: tensors as numbers, non-finite floats as strings."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return encode(value.value, where)
    raise ValueError(
        f"{where} is a {type(value).__name__}, which cannot be written as JSON; pass numbers, "
        "strings, lists, dicts or tensors."
    )


def decode(value: Any) -> Any:
    """Inverse of the non-finite encoding of :func:`encode`."""
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_encoded(path: Path, value: Any) -> None:
    atomic_write(path, lambda file: file.write(dumps(value).encode()))


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Atomically write ``value`` as JSON, encoded like ``config.json`` (tensors as numbers,
    non-finite floats as the strings "nan", "inf", "-inf")."""
    write_encoded(Path(path), encode(value, "value"))


def differences(stored: Any, given: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Key paths (dotted) where two JSON configs differ, with both values."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in sorted(set(stored) | set(given)):
            yield from differences(
                stored.get(key, _MISSING), given.get(key, _MISSING), f"{prefix}{key}."
            )
    elif stored != given:
        yield prefix.removesuffix("."), stored, given


def scalars(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a nested record as ``(slash/joined/path, value)``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from scalars(inner, f"{prefix}{key}/")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix.removesuffix("/"), float(value)
