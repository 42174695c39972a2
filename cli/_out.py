"""What the commands share about ``--out``."""

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
