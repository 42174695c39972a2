"""Reading ``metrics.jsonl``: one JSON record per line, the last one perhaps cut short."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_records"]


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
