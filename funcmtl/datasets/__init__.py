"""Multi-task datasets: built-ins, files, and the two-objective toy problem.

- :func:`load` / :func:`load_splits` by name (:data:`NAMES`: ``multidigits``, ``synthetic``)
  or by path (``.csv``, ``.npz``, ``.pt``); :func:`describe` gives one line per name.
- :class:`MultiTaskDataset`: inputs ``(N, F)``, one target per :class:`~funcmtl.mtl.Task`;
  :func:`split` for a seeded train / val / test split.
- :func:`multidigits` / :func:`multidigits_splits`: real 8x8 digit pairs (embedded data).
- :func:`synthetic`: the MMoE paper's regression tasks with a controlled task correlation.
- :func:`toy_losses` / :func:`toy_trajectory` / :func:`toy_trajectories`: the CAGrad /
  Nash-MTL / FAMO toy problem (not a dataset: two losses of a point in R²).

Example:
    >>> import funcmtl as fm
    >>> train, val, test = fm.datasets.load_splits("multidigits", seed=0)
    >>> x, y = train.data        # (8000, 128), {"left": (8000,), "right": ..., "sum": ...}
"""

from funcmtl.datasets._dataset import MultiTaskDataset, split
from funcmtl.datasets._digits import (
    DIGITS_PATH,
    SUM_SCALE,
    digits,
    multidigits,
    multidigits_splits,
)
from funcmtl.datasets._files import from_columns, from_file, from_torch_dataset
from funcmtl.datasets._load import NAMES, describe, load, load_splits
from funcmtl.datasets._synthetic import (
    SyntheticParams,
    synthetic,
    synthetic_params,
    synthetic_targets,
)
from funcmtl.datasets._toy import (
    TOY_SCALES,
    TOY_STARTS,
    toy_losses,
    toy_trajectories,
    toy_trajectory,
)

__all__ = [
    "DIGITS_PATH",
    "NAMES",
    "SUM_SCALE",
    "TOY_SCALES",
    "TOY_STARTS",
    "MultiTaskDataset",
    "SyntheticParams",
    "describe",
    "digits",
    "from_columns",
    "from_file",
    "from_torch_dataset",
    "load",
    "load_splits",
    "multidigits",
    "multidigits_splits",
    "split",
    "synthetic",
    "synthetic_params",
    "synthetic_targets",
    "toy_losses",
    "toy_trajectories",
    "toy_trajectory",
]
