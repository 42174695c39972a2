"""Experiments: a typed run configuration, the run behind ``funcmtl train`` (``fm.train.fit``
with the run's hooks), single-task baselines and result tables. The command line is a thin
layer over these functions, so research code can run the same experiment from Python::

    >>> from funcmtl.experiment import TrainConfig, train
    >>> result = train(TrainConfig(data="multidigits", method="pcgrad", epochs=2))
"""

from funcmtl.experiment._baselines import run_summary, single_task_baselines
from funcmtl.experiment._build import Setup, Splits, build, load_splits, select_tasks
from funcmtl.experiment._config import PRESETS, TrainConfig, preset
from funcmtl.experiment._io import load_run
from funcmtl.experiment._loop import Interrupted, RunResult, train
from funcmtl.experiment._report import delta_m, primary_metric, summarize, table, task_table

__all__ = [
    "PRESETS",
    "Interrupted",
    "RunResult",
    "Setup",
    "Splits",
    "TrainConfig",
    "build",
    "delta_m",
    "load_run",
    "load_splits",
    "preset",
    "primary_metric",
    "run_summary",
    "select_tasks",
    "single_task_baselines",
    "summarize",
    "table",
    "task_table",
    "train",
]
