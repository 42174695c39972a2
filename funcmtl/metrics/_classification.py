"""Classification metrics: accuracy, confusion matrix, precision, recall and F1."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from funcmtl._masking import safe_divide
from funcmtl.metrics._checks import logits_labels, preds_labels

Average = Literal["macro", "micro", "weighted", "binary"] | None
_AVERAGES = ("macro", "micro", "weighted", "binary", None)


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
        labels, weights = logits_labels(logits_or_preds, labels, mask)
        if k > logits_or_preds.shape[1]:
            raise ValueError(
                f"`k`={k} must be at most the number of classes {logits_or_preds.shape[1]}."
            )
        top = logits_or_preds.topk(k, dim=-1).indices
        correct = (top == labels[:, None]).any(-1)
    else:
        preds, labels, weights, _ = preds_labels(logits_or_preds, labels, None, mask)
        correct = preds == labels
    return safe_divide((correct.to(weights.dtype) * weights).sum(), weights.sum())


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
    preds, labels, weights, num_classes = preds_labels(logits_or_preds, labels, num_classes, mask)
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


class _ClassCounts(NamedTuple):
    """The per-class counts that precision, recall and F1 are made of."""

    true_positive: Tensor  # shape=(C,), or () pooled for average="micro"
    predicted: Tensor  # TP + FP, shape of true_positive
    actual: Tensor  # TP + FN (the support), shape of true_positive


def _class_counts(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None,
    average: Average,
    mask: Tensor | None,
) -> _ClassCounts:
    if average not in _AVERAGES:
        raise ValueError(
            f"`average` must be one of 'macro', 'micro', 'weighted', 'binary' or None;"
            f" got {average!r}."
        )
    matrix = confusion_matrix(logits_or_preds, labels, num_classes, mask=mask)
    if average == "binary" and matrix.shape[0] != 2:
        raise ValueError(f"`average='binary'` needs num_classes=2; got {matrix.shape[0]}.")
    counts = _ClassCounts(matrix.diagonal(), matrix.sum(0), matrix.sum(1))
    if average == "micro":
        # Pooled counts: with every class listed, Σ predicted = Σ actual = N.
        return _ClassCounts(*(count.sum() for count in counts))
    return counts


def _average(per_class: Tensor, support: Tensor, average: Average) -> Tensor:
    """Reduce a per-class score as ``average`` says (``"micro"`` scores are pooled already)."""
    if average is None or average == "micro":
        return per_class
    if average == "binary":
        return per_class[1]
    if average == "macro":
        return per_class.mean()
    return safe_divide((per_class * support).sum(), support.sum())


def precision(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    """Precision, the fraction of predictions of a class that are right.

    Per class ``c``: ``TP_c / (TP_c + FP_c)``, and 0 for a class never predicted
    (scikit-learn's ``zero_division=0``). Counts come from :func:`confusion_matrix`.

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
        scikit-learn, ``sklearn.metrics.precision_score``.
    """
    counts = _class_counts(logits_or_preds, labels, num_classes, average, mask)
    per_class = safe_divide(counts.true_positive, counts.predicted)
    return _average(per_class, counts.actual, average)


def recall(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    """Recall, the fraction of a class's examples that are found.

    Per class ``c``: ``TP_c / (TP_c + FN_c)``, and 0 for a class never present
    (scikit-learn's ``zero_division=0``). Counts come from :func:`confusion_matrix`.

    Args:
        logits_or_preds: ``(N, C)`` logits or ``(N,)`` integer predicted class ids.
        labels: ``(N,)`` integer class ids in ``[0, C)``.
        num_classes: ``C``; required with class ids, inferred from logits.
        average: ``"macro"`` (unweighted mean over all ``C`` classes, absent ones count as
            0), ``"micro"`` (from pooled counts; equals accuracy for single-label data),
            ``"weighted"`` (mean weighted by each class's support; equals accuracy),
            ``"binary"`` (class 1 of ``C = 2``) or ``None`` (per class, ``(C,)``).
        mask: ``(N,)`` bool or float weights.

    Returns:
        A 0-dim tensor, or ``(C,)`` when ``average`` is None.

    References:
        scikit-learn, ``sklearn.metrics.recall_score``.
    """
    counts = _class_counts(logits_or_preds, labels, num_classes, average, mask)
    per_class = safe_divide(counts.true_positive, counts.actual)
    return _average(per_class, counts.actual, average)


def f1(
    logits_or_preds: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    average: Average = "macro",
    mask: Tensor | None = None,
) -> Tensor:
    """F1 score, the harmonic mean of precision and recall.

    Per class ``c``: ``2 TP_c / (2 TP_c + FP_c + FN_c)``, and 0 for a class neither
    predicted nor present (scikit-learn's ``zero_division=0``). Counts come from
    :func:`confusion_matrix`.

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
        scikit-learn, ``sklearn.metrics.f1_score``.
    """
    counts = _class_counts(logits_or_preds, labels, num_classes, average, mask)
    # TP + FP + FN = predicted + actual - TP, so 2 TP / (2 TP + FP + FN) = 2 TP / (pred + act).
    per_class = safe_divide(2.0 * counts.true_positive, counts.predicted + counts.actual)
    return _average(per_class, counts.actual, average)
