"""Input checks of the metrics: logits or predicted class ids, labels and per-example masks."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl._masking import check_class_ids, format_shape, is_integer, mask_weights, sanitize


def _float_dtype(*tensors: Tensor | None) -> torch.dtype:
    for x in tensors:
        if x is not None and x.is_floating_point():
            return x.dtype
    return torch.get_default_dtype()


def _example_weights(
    mask: Tensor | None, labels: Tensor, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``(N,)`` float weights of a per-example ``mask``: ones without a mask."""
    weights = mask_weights(mask, labels, dtype, elementwise=False)
    if weights is None:
        return torch.ones(labels.shape, dtype=dtype, device=device)
    return weights


def logits_labels(logits: Tensor, labels: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check ``logits (N, C)`` and ``labels (N,)``; return sanitized labels and weights."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        found = (
            f"{logits.dtype} {format_shape(logits.shape)}"
            if isinstance(logits, Tensor)
            else type(logits).__name__
        )
        raise ValueError(f"`logits` must be a floating point tensor (N, C); got {found}.")
    check_class_ids(labels, logits.shape[0], "logits", logits.shape)
    weights = _example_weights(mask, labels, logits.dtype, logits.device)
    return sanitize(labels, weights).long(), weights


def preds_labels(
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
                f"`num_classes`={num_classes} does not match `logits` {format_shape(x.shape)}:"
                f" expected {x.shape[1]}."
            )
        num_classes, preds = x.shape[1], x.argmax(-1)
    elif x.ndim == 1 and is_integer(x):
        preds = x.long()
    else:
        raise ValueError(
            "`logits_or_preds` must be floating point logits (N, C) or integer class ids"
            f" (N,); got {x.dtype} {format_shape(x.shape)}. For binary scores use"
            " `binary_labels`."
        )
    check_class_ids(labels, x.shape[0], "logits_or_preds", x.shape)
    weights = _example_weights(mask, labels, _float_dtype(x, mask), x.device)
    return sanitize(preds, weights), sanitize(labels, weights).long(), weights, num_classes


def check_labels(labels: Tensor, num_classes: int, *, mask: Tensor | None = None) -> None:
    """Raise ``ValueError`` if a (valid) label is not an integer in ``[0, num_classes)``.

    Eager only: it reads values, so call it when loading data, not inside ``vmap``.

    Args:
        labels: integer class ids of any shape.
        num_classes: the number of classes ``C``.
        mask: optional bool or float tensor of ``labels``' shape; entries where it is 0
            (missing labels) are not checked.
    """
    if not isinstance(labels, Tensor) or not is_integer(labels) or labels.dtype == torch.bool:
        found = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must be an integer tensor of class ids; got {found}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}.")
    bad = (labels < 0) | (labels >= num_classes)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.shape != labels.shape:
            found = format_shape(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(
                f"`mask` must have the shape of `labels` {format_shape(labels.shape)};"
                f" got {found}."
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
