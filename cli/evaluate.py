"""``funcmtl eval``: evaluate the model saved in a run directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from funcmtl import experiment
from funcmtl.experiment import _build, _evaluate, _io, _state


@dataclasses.dataclass(frozen=True)
class Eval:
    """Evaluate a saved run (its final checkpoint) and print the per-task table.

    Example: funcmtl eval --out runs/pcgrad --split test
    """

    out: Path
    """The run directory (--out of funcmtl train)."""
    split: Literal["test", "val"] = "test"
    """Which split to evaluate."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'cuda:N'."""


def run(config: Eval) -> int:
    config_values, state = experiment.load_run(config.out, device=config.device)
    splits = experiment.load_splits(config_values)
    data = getattr(splits, config.split)
    setup = experiment.build(config_values, splits, _state.total_steps(
        config_values, len(splits.train)))
    device = _build.resolve_device(config.device)
    scores = _evaluate.evaluate(_io.apply_of(setup), state.params, state.buffers, data,
                                 device)
    results = experiment.summarize(setup.tasks, scores)
    print(f"{config.out}: {config.split} split ({len(data)} examples)")
    print(experiment.task_table(setup.tasks, results, config_values.members))
    return 0
