"""Metrics of predicted probabilities: negative log-likelihood, Brier score, calibration."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import losses
from funcmtl._masking import safe_divide
from funcmtl.metrics._checks import logits_labels


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
    labels, weights = logits_labels(logits, labels, mask)
    probs = torch.softmax(logits, dim=-1)
    classes = torch.arange(logits.shape[1], device=labels.device)
    one_hot = (labels[:, None] == classes).to(probs.dtype)
    per_example = (probs - one_hot).square().sum(-1)
    return safe_divide((per_example * weights).sum(), weights.sum())


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
    labels, weights = logits_labels(logits, labels, mask)
    confidence, preds = torch.softmax(logits, dim=-1).max(-1)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=logits.dtype, device=logits.device)
    # right=False: bin m holds edges[m] < p̂ <= edges[m+1], left-open as in Guo et al.
    bins = torch.bucketize(confidence, edges[1:-1])
    gap = weights * ((preds == labels).to(logits.dtype) - confidence)
    per_bin = torch.zeros(n_bins, dtype=logits.dtype, device=logits.device).scatter_add(
        0, bins, gap
    )
    return safe_divide(per_bin.abs().sum(), weights.sum())
