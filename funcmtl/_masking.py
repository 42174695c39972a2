"""Input checks and masks for missing labels, shared by :mod:`funcmtl.losses` and
:mod:`funcmtl.metrics`.

A mask is ``(N,)`` (whole examples) or, for elementwise scores, the shape of the prediction;
``bool`` or float weights. Masked-out labels may hold garbage, so they are replaced with
``torch.where`` before any arithmetic (``NaN * 0`` is ``NaN``), and a mean over no valid
entry is 0. Everything here runs under ``torch.func.vmap``: no branching on tensor values.
"""

from __future__ import annotations

import torch
from torch import Tensor


def format_shape(shape: tuple[int, ...] | torch.Size) -> str:
    """``(3,)``, ``(3, 4)``: a shape as Python writes a tuple, for error messages."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def is_integer(x: Tensor) -> bool:
    """Whether ``x`` has an integer (or bool) dtype."""
    return not (x.is_floating_point() or x.is_complex())


def check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor; got {type(x).__name__}.")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a floating point tensor; got {x.dtype}.")


def check_pair(
    pred: Tensor, target: Tensor, *, pred_name: str = "pred", target_name: str = "target"
) -> Tensor:
    """Check a floating point ``pred (N, ...)`` and a ``target`` of the same shape.

    Returns ``target`` in ``pred``'s dtype: the model's dtype sets the loss's, whatever the
    data loader produced (it collates numpy floats to float64).
    """
    check_float(pred, pred_name)
    if pred.ndim == 0:
        raise ValueError(
            f"`{pred_name}` must have shape (N, ...) with a batch axis; got a 0-dim tensor."
        )
    if not isinstance(target, Tensor) or target.shape != pred.shape:
        found = format_shape(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(
            f"`{target_name}` must have the shape of `{pred_name}` {format_shape(pred.shape)};"
            f" got {found}."
        )
    return target.to(pred.dtype)


def check_class_ids(labels: Tensor, n: int, what: str, shape: torch.Size) -> None:
    """Check that ``labels`` are ``(N,)`` integer class ids matching ``what`` of ``shape``."""
    if not isinstance(labels, Tensor) or labels.shape != (n,):
        found = format_shape(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"`labels` must have shape (N,)=({n},) to match `{what}` {format_shape(shape)};"
            f" got {found}."
        )
    if not is_integer(labels) or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be integer class ids (int64); got {labels.dtype}.")


def mask_weights(
    mask: Tensor | None, like: Tensor, dtype: torch.dtype, *, elementwise: bool
) -> Tensor | None:
    """Return ``mask`` as ``dtype`` weights broadcast to ``like.shape``, or ``None``.

    ``mask`` is ``(N,)``, or (when ``elementwise``) exactly ``like.shape``.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise ValueError(f"`mask` must be a torch.Tensor or None; got {type(mask).__name__}.")
    n = like.shape[0]
    if mask.shape != (n,) and not (elementwise and mask.shape == like.shape):
        allowed = f"(N,)=({n},)"
        if elementwise and like.ndim > 1:
            allowed += f" or the shape of `pred` {format_shape(like.shape)}"
        raise ValueError(f"`mask` must have shape {allowed}; got {format_shape(mask.shape)}.")
    if mask.is_complex():
        raise ValueError(f"`mask` must be bool or real weights; got {mask.dtype}.")
    weights = mask.to(dtype)
    return weights.reshape(weights.shape + (1,) * (like.ndim - weights.ndim)).expand(like.shape)


def sanitize(target: Tensor, weights: Tensor | None) -> Tensor:
    """``target`` with its masked-out entries (weight 0) replaced by 0."""
    if weights is None:
        return target
    return torch.where(weights != 0, target, torch.zeros_like(target))


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, and 0 where the denominator is 0 (``zero_division=0``)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0)
