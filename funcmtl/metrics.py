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

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from funcmtl import losses

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

Average = Literal["macro", "micro", "weighted", "binary"] | None
_AVERAGES = ("macro", "micro", "weighted", "binary", None)


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _is_integer(x: Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex())


def _float_dtype(*tensors: Tensor | None) -> torch.dtype:
    for x in tensors:
        if x is not None and x.is_floating_point():
            return x.dtype
    return torch.get_default_dtype()


def _check_labels_shape(labels: Tensor, n: int, what: str, shape: torch.Size) -> None:
    if not isinstance(labels, Tensor) or labels.shape != (n,):
        found = _shape(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"`labels` must have shape (N,)=({n},) to match `{what}` {_shape(shape)}; got {found}."
        )
    if not _is_integer(labels) or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be integer class ids (int64); got {labels.dtype}.")


def _weights(mask: Tensor | None, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(N,)`` float weights: ones without a mask."""
    if mask is None:
        return torch.ones(n, dtype=dtype, device=device)
    if not isinstance(mask, Tensor) or mask.shape != (n,):
        found = _shape(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"`mask` must have shape (N,)=({n},); got {found}.")
    return mask.to(dtype)


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, and 0 where the denominator is 0 (``zero_division=0``)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0)


def _one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(dtype)


def _logits_labels(logits: Tensor, labels: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check ``logits (N, C)`` and ``labels (N,)``; return sanitized labels and weights."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        is_tensor = isinstance(logits, Tensor)
        found = f"{logits.dtype} {_shape(logits.shape)}" if is_tensor else type(logits).__name__
        raise ValueError(f"`logits` must be a floating point tensor (N, C); got {found}.")
    _check_labels_shape(labels, logits.shape[0], "logits", logits.shape)
    weights = _weights(mask, logits.shape[0], logits.dtype, logits.device)
    return torch.where(weights != 0, labels, 0).long(), weights


def _preds_labels(
    logits_or_preds: Tensor, labels: Tensor, num_classes: int | None, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, int | None]:
    """Return sanitized ``(preds, labels, weights, num_classes)``, all ``(N,)``."""
    x = logits_or_preds
    if not isinstance(x, Tensor):
        raise ValueError(f"`logits_or_preds` must be a torch.Tensor; got {type(x).__name__}.")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}.")
    if x.ndim == 2 and x.is_floating_point():
        if num_classes is not None and num_classes != x.shape[1]:
            raise ValueError(
                f"`num_classes`={num_classes} does not match `logits` {_shape(x.shape)}:"
                f" expected {x.shape[1]}."
            )
        num_classes, preds = x.shape[1], x.argmax(-1)
    elif x.ndim == 1 and _is_integer(x):
        preds = x.long()
    else:
        raise ValueError(
            "`logits_or_preds` must be floating point logits (N, C) or integer class ids"
            f" (N,); got {x.dtype} {_shape(x.shape)}. For binary scores use `binary_labels`."
        )
    _check_labels_shape(labels, x.shape[0], "logits_or_preds", x.shape)
    weights = _weights(mask, x.shape[0], _float_dtype(x, mask), x.device)
    valid = weights != 0
    return torch.where(valid, preds, 0), torch.where(valid, labels, 0).long(), weights, num_classes


def check_labels(labels: Tensor, num_classes: int, *, mask: Tensor | None = None) -> None:
    """Raise ``ValueError`` if a (valid) label is not an integer in ``[0, num_classes)``.

    Eager only: it reads values, so call it when loading data, not inside ``vmap``.

    Args:
        labels: integer class ids of any shape.
        num_classes: the number of classes ``C``.
        mask: optional bool or float tensor of ``labels``' shape; entries where it is 0
            (missing labels) are not checked.
    """
    if not isinstance(labels, Tensor) or not _is_integer(labels) or labels.dtype == torch.bool:
        found = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must be an integer tensor of class ids; got {found}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}.")
    bad = (labels < 0) | (labels >= num_classes)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.shape != labels.shape:
            found = _shape(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(
                f"`mask` must have the shape of `labels` {_shape(labels.shape)}; got {found}."
            )
        bad &= mask != 0
    count = int(bad.sum())
    if count:
        index = tuple(int(i) for i in bad.nonzero()[0])
        index_str = index[0] if len(index) == 1 else index
        raise ValueError(
            f"`labels` must lie in [0, num_classes)=[0, {num_classes}); found {count}"
            f" out-of-range value(s), the first {int(labels[index])} at index {index_str}."
        )


def binary_labels(scores: Tensor, threshold: float = 0.0) -> Tensor:
    """Class ids ``(scores > threshold)`` as int64: use 0.0 for logits, 0.5 for probabilities."""
    return (scores > threshold).long()


def accuracy(
    logits_or_preds: Tensor, labels: Tensor, *, mask: Tensor | None = None, k: int = 1
) -> Tensor:
    """Fraction of correct predictions, ``Σ wᵢ [ŷᵢ = yᵢ] / Σ wᵢ``.

    Args:
        logits_or_preds: ``(N, C)`` logits or ``(N,)`` integer predicted class ids.
        labels: ``(N,)`` integer class ids.
        mask: ``(N,)`` bool or float weights.
        k: top-``k`` accuracy (a hit if the label is among the ``k`` largest logits);
            needs logits when ``k > 1``.
    """
    if k != 1:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int; got {k!r}.")
        labels, weights = _logits_labels(logits_or_preds, labels, mask)
        if k > logits_or_preds.shape[1]:
            raise ValueError(
                f"`k`={k} must be at most the number of classes {logits_or_preds.shape[1]}."
            )
        top = logits_or_preds.topk(k, dim=-1).indices
        correct = (top == labels[:, None]).any(-1)
    else:
        preds, labels, weights, _ = _preds_labels(logits_or_preds, labels, None, mask)
        correct = preds == labels
    return _safe_divide((correct.to(weights.dtype) * weights).sum(), weights.sum())


def confusion_matrix(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Confusion matrix ``M[i, j]`` = (weighted) count of label ``i`` predicted as ``j``.

    Rows are true classes, columns predictions, as ``sklearn.metrics.confusion_matrix``.

    Args:
        logits_or_preds: ``(N, C)`` logits or ``(N,)`` integer predicted class ids.
        labels: ``(N,)`` integer class ids in ``[0, C)``.
        num_classes: ``C``; required with class ids, inferred from logits.
        mask: ``(N,)`` bool or float weights.

    Returns:
        ``(C, C)`` floating point counts (weights sum when ``mask`` is float). All NaN if a
        valid label or prediction lies outside ``[0, C)``: a value check that runs under
        ``vmap`` (use :func:`check_labels` eagerly for a message).
    """
    preds, labels, weights, num_classes = _preds_labels(
        logits_or_preds, labels, num_classes, mask
    )
    if num_classes is None:
        raise ValueError("`num_classes` is required when `logits_or_preds` are class ids.")
    cells = num_classes * num_classes
    in_range = (labels >= 0) & (labels < num_classes) & (preds >= 0) & (preds < num_classes)
    # Out-of-range pairs go to an extra cell rather than silently into a wrong one.
    index = torch.where(in_range, labels * num_classes + preds, cells)
    flat = torch.zeros(cells + 1, dtype=weights.dtype, device=weights.device)
    flat = flat.scatter_add(0, index, weights)
    poison = torch.where(flat[cells] != 0, torch.nan, 0.0)
    return (flat[:cells] + poison).reshape(num_classes, num_classes)


def _prf(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None,
    average: Average,
    mask: Tensor | None,
    score: Literal["precision", "recall", "f1"],
) -> Tensor:
    if average not in _AVERAGES:
        raise ValueError(
            f"`average` must be one of 'macro', 'micro', 'weighted', 'binary' or None;"
            f" got {average!r}."
        )
    matrix = confusion_matrix(logits_or_preds, labels, num_classes, mask=mask)
    if average == "binary" and matrix.shape[0] != 2:
        raise ValueError(f"`average='binary'` needs num_classes=2; got {matrix.shape[0]}.")
    true_positive = matrix.diagonal()
    predicted, actual = matrix.sum(0), matrix.sum(1)
    if average == "micro":
        # Pooled counts: with every class listed, Σ predicted = Σ actual = N.
        true_positive, predicted, actual = true_positive.sum(), predicted.sum(), actual.sum()
    if score == "precision":
        per_class = _safe_divide(true_positive, predicted)
    elif score == "recall":
        per_class = _safe_divide(true_positive, actual)
    else:  # F1 = 2 TP / (2 TP + FP + FN), as scikit-learn, 0 when TP + FP + FN = 0.
        per_class = _safe_divide(2.0 * true_positive, predicted + actual)
    if average is None or average == "micro":
        return per_class
    if average == "binary":
        return per_class[1]
    if average == "macro":
        return per_class.mean()
    return _safe_divide((per_class * actual).sum(), actual.sum())


_PRF_DOC = """{title}

    Per class ``c``: {formula}, 0 where the denominator is 0 (scikit-learn's
    ``zero_division=0``). Counts come from :func:`confusion_matrix`.

    Args:
        logits_or_preds: ``(N, C)`` logits or ``(N,)`` integer predicted class ids.
        labels: ``(N,)`` integer class ids in ``[0, C)``.
        num_classes: ``C``; required with class ids, inferred from logits.
        average: ``"macro"`` (unweighted mean over all ``C`` classes, absent ones count as
            0), ``"micro"`` (from pooled counts; equals accuracy for single-label data),
            ``"weighted"`` (mean weighted by each class's support), ``"binary"`` (class 1 of
            ``C = 2``) or ``None`` (per class, ``(C,)``).
        mask: ``(N,)`` bool or float weights.

    Returns:
        A 0-dim tensor, or ``(C,)`` when ``average`` is None.

    References:
        scikit-learn, ``sklearn.metrics.{name}_score``.
    """


def precision(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    return _prf(logits_or_preds, labels, num_classes, average, mask, "precision")


def recall(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    return _prf(logits_or_preds, labels, num_classes, average, mask, "recall")


def f1(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    return _prf(logits_or_preds, labels, num_classes, average, mask, "f1")


precision.__doc__ = _PRF_DOC.format(
    title="Precision, the fraction of predictions of a class that are right.",
    formula="``TP_c / (TP_c + FP_c)``",
    name="precision",
)
recall.__doc__ = _PRF_DOC.format(
    title="Recall, the fraction of a class's examples that are found.",
    formula="``TP_c / (TP_c + FN_c)``",
    name="recall",
)
f1.__doc__ = _PRF_DOC.format(
    title="F1 score, the harmonic mean of precision and recall.",
    formula="``2 TP_c / (2 TP_c + FP_c + FN_c)``",
    name="f1",
)


def mse(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over valid elements; ``pred``, ``target`` ``(N, ...)``.

    The same value as :func:`funcmtl.losses.mse`; ``mask`` is ``(N,)`` or ``pred``'s shape.
    """
    return losses.mse(pred, target, mask=mask)


def mae(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over valid elements; ``pred``, ``target`` ``(N, ...)``."""
    return losses.l1(pred, target, mask=mask)


def r2(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    multioutput: Literal["uniform_average", "variance_weighted", "raw_values"] = (
        "uniform_average"
    ),
) -> Tensor:
    """Coefficient of determination ``R² = 1 - Σ w (y - ŷ)² / Σ w (y - ȳ)²`` per output.

    ``ȳ`` is the weighted mean of the target. As scikit-learn (``force_finite=True``), an
    output with a constant target scores 1 if predicted exactly, else 0; with no valid
    example the score is 0.

    Args:
        pred: ``(N,)`` or ``(N, D)`` predictions.
        target: the shape of ``pred``; masked-out entries may be NaN.
        mask: ``(N,)`` or ``pred``'s shape, bool or float weights.
        multioutput: ``"uniform_average"`` (mean over the ``D`` outputs),
            ``"variance_weighted"`` (weighted by each output's target variance) or
            ``"raw_values"`` (``(D,)``).

    References:
        scikit-learn, ``sklearn.metrics.r2_score``.
    """
    if multioutput not in ("uniform_average", "variance_weighted", "raw_values"):
        raise ValueError(
            "`multioutput` must be 'uniform_average', 'variance_weighted' or 'raw_values';"
            f" got {multioutput!r}."
        )
    losses._check_pair(pred, target)
    if pred.ndim > 2:
        raise ValueError(f"`pred` must have shape (N,) or (N, D); got {_shape(pred.shape)}.")
    weights = losses._mask_weights(mask, pred, pred.dtype, elementwise=True)
    if weights is None:
        weights = torch.ones_like(pred)
    target = losses._sanitize(target, weights)
    total = weights.sum(0)
    target_mean = _safe_divide((weights * target).sum(0), total)
    residual = (weights * (target - pred).square()).sum(0)
    spread = (weights * (target - target_mean).square()).sum(0)
    score = torch.where(spread != 0, 1.0 - _safe_divide(residual, spread), 0.0)
    score = torch.where((spread == 0) & (residual == 0), 1.0, score)
    score = torch.where(total != 0, score, 0.0)
    if multioutput == "raw_values" or pred.ndim == 1:
        return score
    if multioutput == "variance_weighted":
        # All outputs constant: scikit-learn falls back to the uniform mean.
        weighted = _safe_divide((score * spread).sum(), spread.sum())
        return torch.where(spread.sum() != 0, weighted, score.mean())
    return score.mean()


def nll(logits: Tensor, labels: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean negative log-likelihood ``-Σ wᵢ log softmax(logitsᵢ)[yᵢ] / Σ wᵢ``.

    ``logits (N, C)``, ``labels (N,)``. Equals ``sklearn.metrics.log_loss`` of the softmax
    probabilities (without its clipping).
    """
    return losses.cross_entropy(logits, labels, mask=mask)


def brier(logits: Tensor, labels: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Multi-class Brier score ``mean_i Σ_c (softmax(logitsᵢ)_c - [yᵢ = c])²``.

    ``logits (N, C)``, ``labels (N,)``; ranges over ``[0, 2]``.

    References:
        Brier, `Verification of Forecasts Expressed in Terms of Probability
        <https://doi.org/10.1175/1520-0493(1950)078%3C0001:VOFEIT%3E2.0.CO;2>`_, 1950.
    """
    labels, weights = _logits_labels(logits, labels, mask)
    probs = torch.softmax(logits, dim=-1)
    per_example = (probs - _one_hot(labels, logits.shape[1], probs.dtype)).square().sum(-1)
    return _safe_divide((per_example * weights).sum(), weights.sum())


def ece(logits: Tensor, labels: Tensor, n_bins: int = 15, *, mask: Tensor | None = None) -> Tensor:
    """Expected calibration error over ``n_bins`` equal-width confidence bins.

    With confidence ``p̂ᵢ = max_c softmax(logitsᵢ)_c``, prediction ``ŷᵢ = argmax``, and bins
    ``B_m = ((m-1)/M, m/M]``:

        ECE = Σ_m |B_m|/n · |acc(B_m) - conf(B_m)| = Σ_m |Σ_{i∈B_m} ([ŷᵢ = yᵢ] - p̂ᵢ)| / n,

    with counts replaced by ``mask`` weights. Empty bins contribute 0.

    Args:
        logits: ``(N, C)``.
        labels: ``(N,)`` integer class ids.
        n_bins: ``M``, the number of bins.
        mask: ``(N,)`` bool or float weights.

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017, eq. (3).
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive int; got {n_bins!r}.")
    labels, weights = _logits_labels(logits, labels, mask)
    confidence, preds = torch.softmax(logits, dim=-1).max(-1)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=logits.dtype, device=logits.device)
    # right=False: bin m holds edges[m] < p̂ <= edges[m+1], left-open as in Guo et al.
    bins = torch.bucketize(confidence, edges[1:-1])
    gap = weights * ((preds == labels).to(logits.dtype) - confidence)
    per_bin = torch.zeros(n_bins, dtype=logits.dtype, device=logits.device).scatter_add(
        0, bins, gap
    )
    return _safe_divide(per_bin.abs().sum(), weights.sum())
