"""What the commands share: ``--out``'s lock, and methods written as ``name:key=value,...``."""

from __future__ import annotations

import contextlib

from funcmtl import rundir
from funcmtl.experiment import TrainConfig, _io


def holding_out(config: TrainConfig) -> contextlib.AbstractContextManager:
    """Hold ``--out``'s lock for the whole command (the run and the files written after it);
    only the main process of a torchrun job writes there."""
    if config.out is None or not _io.is_main_process():
        return contextlib.nullcontext()
    return rundir.hold(config.out)


def parse_method(text: str) -> tuple[str, tuple[str, ...]]:
    """'cagrad:c=0.4,rescale=1' -> ('cagrad', ('c=0.4', 'rescale=1')); commas inside
    brackets belong to a value: 'upgrad:pref_vector=(1,2,1)'."""
    name, _, options = text.partition(":")
    items, depth, current = [], 0, ""
    for char in options:
        depth += 1 if char in "([" else -1 if char in ")]" else 0
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return name, tuple(item for item in [*items, current] if item)
