"""The format of ``metrics.jsonl``: one JSON record per line, the last one perhaps cut short.

A record in ``metrics.jsonl``::

    {"step": 120,                      # int: updates applied when the record was taken
     "split": "train",                 # "train" | "val" | "test"
     "loss": 0.83,                     # float: the total (weighted) loss
     "tasks": {"age": {"loss": 0.41, "mae": 3.2},      # per task: its loss and metrics
               "gender": {"loss": 0.42, "accuracy": 0.87}},
     "conflict": {"min_cosine": -0.12,                 # train records only: the smallest
                  "negative_fraction": 0.25},          # task-gradient cosine and the share
                                                       # of task pairs with a negative one
     "member": 3}                      # optional int: the ensemble member, if any

Non-finite floats are written as the JSON strings ``"nan"``, ``"inf"`` and ``"-inf"`` (bare
``NaN`` is not JSON); :meth:`RunDir.records` and :meth:`RunDir.read_summary` turn them back
into floats. 0-dim tensors are written as numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from funcmtl._json import encode

__all__ = ["SPLITS", "read_records", "record_line"]

SPLITS = ("train", "val", "test")


def record_line(record: dict) -> tuple[str, int, str]:
    """``(the JSON line, step, split)`` of a record, checked (see the module docstring).

    Raises:
        ValueError: if ``step`` is not an int, ``split`` not one of ``SPLITS``, or a value
            cannot be written as JSON.
    """
    encoded = encode(record, "record")
    step, split = encoded.get("step"), encoded.get("split")
    if not isinstance(step, int) or isinstance(step, bool) or split not in SPLITS:
        raise ValueError(
            f"a metrics record needs an int 'step' and a 'split' in {SPLITS}; got step="
            f"{step!r}, split={split!r}."
        )
    return json.dumps(encoded, sort_keys=True, allow_nan=False) + "\n", step, split


def read_records(path: Path) -> list[tuple[str, dict]]:
    """``path`` as (raw line, parsed record) pairs; ``[]`` if it does not exist.

    A last line cut short by a crash mid-write is dropped; any other bad line is an error.
    """
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    pairs = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                break
            raise ValueError(
                f"{path} line {number} is not a JSON record; repair or remove that line."
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(
                f"{path} line {number} is not a record with an int 'step'; repair or remove "
                "that line."
            )
        pairs.append((line, record))
    return pairs
