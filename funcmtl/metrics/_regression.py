"""Regression metrics: mean squared and absolute error, coefficient of determination R²."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from funcmtl import losses
from funcmtl._masking import check_pair, format_shape, mask_weights, safe_divide, sanitize


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
    target = check_pair(pred, target)
    if pred.ndim > 2:
        raise ValueError(f"`pred` must have shape (N,) or (N, D); got {format_shape(pred.shape)}.")
    weights = mask_weights(mask, pred, pred.dtype, elementwise=True)
    if weights is None:
        weights = torch.ones_like(pred)
    target = sanitize(target, weights)
    total = weights.sum(0)
    target_mean = safe_divide((weights * target).sum(0), total)
    residual = (weights * (target - pred).square()).sum(0)
    spread = (weights * (target - target_mean).square()).sum(0)
    score = torch.where(spread != 0, 1.0 - safe_divide(residual, spread), 0.0)
    score = torch.where((spread == 0) & (residual == 0), 1.0, score)
    score = torch.where(total != 0, score, 0.0)
    if multioutput == "raw_values" or pred.ndim == 1:
        return score
    if multioutput == "variance_weighted":
        # All outputs constant: scikit-learn falls back to the uniform mean.
        weighted = safe_divide((score * spread).sum(), spread.sum())
        return torch.where(spread.sum() != 0, weighted, score.mean())
    return score.mean()
