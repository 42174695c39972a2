"""Evaluation metrics that run inside ``torch.func.vmap``.

Every metric is pure tensor code with static shapes: no boolean indexing, ``.item()``,
``nonzero`` or branching on values. So ``vmap(metric)`` scores a whole ensemble's
predictions ``(K, N, C)`` in one call. Counting goes through ``scatter_add`` and weights.

Conventions:
    - Classification metrics take ``logits (N, C)`` (the prediction is ``argmax``) or
      predicted class ids ``(N,)`` (integer; then ``num_classes`` is required where the
      metric needs it). Binary scores go through :func:`binary_labels` first.
    - ``mask`` is ``(N,)`` bool or float weights (scikit-learn's ``sample_weight``);
      masked-out labels may be garbage, e.g. ``-1``. A metric over no valid example is 0.
    - ``precision``, ``recall`` and ``f1`` follow scikit-learn with ``zero_division=0`` and
      ``labels=range(num_classes)``: a class never predicted has precision 0, a class never
      present has recall 0, and ``average="macro"`` averages over *all* ``num_classes``
      classes, absent ones included (as 0).
    - Inputs are checked for shape and dtype only; :func:`check_labels` is the eager check
      for out-of-range class ids (it reads values, so it does not run under ``vmap``). Under
      ``vmap`` an out-of-range valid label turns the confusion-matrix metrics into NaN.

Example:
    >>> import torch, funcmtl as fm
    >>> logits, labels = torch.randn(5, 100, 3), torch.randint(0, 3, (100,))
    >>> torch.func.vmap(fm.metrics.accuracy, in_dims=(0, None))(logits, labels).shape
    torch.Size([5])
"""

from funcmtl.metrics._checks import check_labels
from funcmtl.metrics._classification import (
    accuracy,
    binary_labels,
    confusion_matrix,
    f1,
    precision,
    recall,
)
from funcmtl.metrics._probabilistic import brier, ece, nll
from funcmtl.metrics._regression import mae, mse, r2

__all__ = [
    "accuracy",
    "binary_labels",
    "brier",
    "check_labels",
    "confusion_matrix",
    "ece",
    "f1",
    "mae",
    "mse",
    "nll",
    "precision",
    "r2",
    "recall",
]
