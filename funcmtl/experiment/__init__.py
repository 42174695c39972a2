"""Experiments: a typed run configuration, the training loop behind ``funcmtl train``, and
result tables. The command line is a thin layer over these functions, so research code can
run the same experiment from Python::

    >>> from funcmtl.experiment import TrainConfig, train
    >>> result = train(TrainConfig(data="multidigits", method="pcgrad", epochs=2))
"""

from funcmtl.experiment._build import (
    Setup,
    Splits,
    build,
    build_module,
    build_optimizer,
    load_splits,
    resolve_device,
    resolve_method,
    select_tasks,
)
from funcmtl.experiment._config import (
    PRESETS,
    RESUMABLE_KEYS,
    TrainConfig,
    as_train_config,
    from_json,
    option_texts,
    parse_options,
    preset,
    to_json,
)
from funcmtl.experiment._evaluate import evaluate, predict, scores
from funcmtl.experiment._io import (
    apply_of,
    is_main_process,
    load_run,
    open_run_dir,
    write_json,
    write_summary,
    write_text,
)
from funcmtl.experiment._loop import Interrupted, RunResult, initial_tree, total_steps, train
from funcmtl.experiment._report import delta_m, primary_metric, summarize, table, task_table

__all__ = [
    "PRESETS",
    "RESUMABLE_KEYS",
    "Interrupted",
    "RunResult",
    "Setup",
    "Splits",
    "TrainConfig",
    "as_train_config",
    "build",
    "build_module",
    "apply_of",
    "build_optimizer",
    "delta_m",
    "evaluate",
    "from_json",
    "initial_tree",
    "is_main_process",
    "load_run",
    "load_splits",
    "open_run_dir",
    "option_texts",
    "parse_options",
    "predict",
    "preset",
    "primary_metric",
    "resolve_device",
    "resolve_method",
    "scores",
    "select_tasks",
    "summarize",
    "table",
    "task_table",
    "to_json",
    "total_steps",
    "train",
    "write_json",
    "write_summary",
    "write_text",
]
