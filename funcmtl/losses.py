"""Task losses with masks for missing labels.

Every loss returns a 0-dim mean. In multi-task data a label is often missing for some tasks;
``mask`` marks the examples (or elements) that have one, either ``bool`` or float weights.
The loss is the weighted mean over valid entries,

    L = Σᵢ wᵢ ℓᵢ / Σᵢ wᵢ,   and L = 0 when Σᵢ wᵢ = 0,

computed without branching on tensor values, so it runs inside ``torch.func.vmap`` and
``torch.compile``. Masked-out labels may hold garbage (class id ``-1``, ``NaN`` targets):
they are replaced by a harmless value with ``torch.where`` *before* the loss, because
``NaN * 0`` is ``NaN`` and would poison both the value and the gradient.

Shapes: classification takes ``logits (N, C)`` and ``labels (N,)``; the others take
``pred`` and ``target`` of one shape ``(N, ...)``. A mask is ``(N,)`` (whole examples; for
``pred (N, D)`` the mean runs over all ``D`` elements of each valid example) or, for the
elementwise losses, the full shape of ``pred`` (element by element). Float targets are cast
to ``pred``'s dtype, so the loss has the model's dtype (float64 targets from a DataLoader
do not turn a float32 model's loss and gradients into float64).

Example:
    >>> import torch, funcmtl as fm
    >>> logits, labels = torch.randn(4, 3), torch.tensor([0, 2, -1, 1])
    >>> loss = fm.losses.cross_entropy(logits, labels, mask=labels >= 0)
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl._masking import (
    check_class_ids,
    check_float,
    check_pair,
    format_shape,
    mask_weights,
    sanitize,
)

__all__ = ["binary_cross_entropy", "cross_entropy", "huber", "l1", "mse"]


def _weighted_mean(loss: Tensor, weights: Tensor | None) -> Tensor:
    """``Σ w ℓ / Σ w``, exactly 0 when nothing is valid (no branch on values)."""
    if weights is None:
        return loss.sum() / max(loss.numel(), 1)
    total = weights.sum()
    # `where`, not `loss * w`: a NaN loss at a masked-out entry must contribute 0, not NaN.
    weighted = torch.where(weights != 0, loss * weights, torch.zeros_like(loss)).sum()
    return weighted / torch.where(total != 0, total, torch.ones_like(total))


def cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    mask: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Mean softmax cross-entropy of integer labels.

    ``ℓᵢ = (1 - ε)(-log pᵢ[yᵢ]) + ε/C Σ_c (-log pᵢ[c])`` with ``p = softmax(logits)`` and
    ``ε = label_smoothing``, as ``torch.nn.functional.cross_entropy``.

    Args:
        logits: ``(N, C)`` unnormalized scores.
        labels: ``(N,)`` integer class ids in ``[0, C)``; masked-out entries may be anything.
        mask: ``(N,)`` bool or float weights marking examples that have a label.
        label_smoothing: ``ε`` in ``[0, 1]``.

    Returns:
        A 0-dim tensor; 0 when no example is valid.

    References:
        Szegedy et al., `Rethinking the Inception Architecture for Computer Vision
        <https://arxiv.org/abs/1512.00567>`_, 2016 (label smoothing).
    """
    check_float(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"`logits` must have shape (N, C); got {format_shape(logits.shape)}.")
    n, num_classes = logits.shape
    check_class_ids(labels, n, "logits", logits.shape)
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"`label_smoothing` must lie in [0, 1]; got {label_smoothing}.")
    weights = mask_weights(mask, labels, logits.dtype, elementwise=False)
    labels = sanitize(labels, weights).long()
    log_probs = torch.log_softmax(logits, dim=-1)
    loss = -log_probs.gather(-1, labels[:, None])[:, 0]
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing / num_classes * log_probs.sum(-1)
    return _weighted_mean(loss, weights)


def binary_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    mask: Tensor | None = None,
    pos_weight: Tensor | float | None = None,
) -> Tensor:
    """Mean binary cross-entropy from logits, numerically stable for any logit.

    ``ℓ = -[a·t·log σ(x) + (1 - t)·log(1 - σ(x))]`` with ``a = pos_weight``, evaluated as
    ``(1 - t)·x + (1 + (a - 1)·t)·softplus(-x)`` so no ``exp`` overflows, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Args:
        logits: ``(N, ...)`` scores, e.g. ``(N,)`` or ``(N, labels)`` for multi-label tasks.
        targets: the shape of ``logits``, values in ``[0, 1]``; masked-out entries may be NaN.
        mask: ``(N,)`` or the shape of ``logits``, bool or float weights.
        pos_weight: weight of positive targets, broadcastable to ``logits.shape[1:]``.

    Returns:
        A 0-dim tensor; 0 when nothing is valid.
    """
    targets = check_pair(logits, targets, pred_name="logits", target_name="targets")
    weights = mask_weights(mask, logits, logits.dtype, elementwise=True)
    targets = sanitize(targets, weights)
    softplus_neg = torch.nn.functional.softplus(-logits)
    if pos_weight is None:
        loss = (1.0 - targets) * logits + softplus_neg
    else:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        try:
            torch.broadcast_shapes(pos_weight.shape, logits.shape[1:])
        except RuntimeError:
            raise ValueError(
                "`pos_weight` must broadcast to `logits.shape[1:]`"
                f" {format_shape(logits.shape[1:])}; got {format_shape(pos_weight.shape)}."
            ) from None
        loss = (1.0 - targets) * logits + (1.0 + (pos_weight - 1.0) * targets) * softplus_neg
    return _weighted_mean(loss, weights)


def mse(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean squared error ``mean (pred - target)²`` over valid elements.

    Args:
        pred: ``(N, ...)`` predictions.
        target: the shape of ``pred``; masked-out entries may be NaN.
        mask: ``(N,)`` or the shape of ``pred``, bool or float weights.
    """
    target = check_pair(pred, target)
    weights = mask_weights(mask, pred, pred.dtype, elementwise=True)
    return _weighted_mean((pred - sanitize(target, weights)).square(), weights)


def l1(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error ``mean |pred - target|`` over valid elements (see :func:`mse`)."""
    target = check_pair(pred, target)
    weights = mask_weights(mask, pred, pred.dtype, elementwise=True)
    return _weighted_mean((pred - sanitize(target, weights)).abs(), weights)


def huber(
    pred: Tensor, target: Tensor, *, delta: float = 1.0, mask: Tensor | None = None
) -> Tensor:
    """Mean Huber loss over valid elements (see :func:`mse` for shapes).

    ``ℓ(r) = r²/2`` for ``|r| ≤ δ`` and ``δ(|r| - δ/2)`` beyond, with ``r = pred - target``;
    written as ``q(|r| - q/2)`` with ``q = min(|r|, δ)``, one smooth expression.

    References:
        Huber, `Robust Estimation of a Location Parameter
        <https://doi.org/10.1214/aoms/1177703732>`_, 1964.
    """
    target = check_pair(pred, target)
    if not float(delta) > 0.0:
        raise ValueError(f"`delta` must be positive; got {delta}.")
    weights = mask_weights(mask, pred, pred.dtype, elementwise=True)
    abs_error = (pred - sanitize(target, weights)).abs()
    quadratic = abs_error.clamp(max=delta)
    return _weighted_mean(quadratic * (abs_error - 0.5 * quadratic), weights)
