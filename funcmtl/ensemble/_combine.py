"""Combining member predictions, and the uncertainty the spread between members reveals.

Inputs carry a leading member axis: classification logits ``(K, N, C)``, regression
predictions ``(K, N, ...)``. All functions are pure tensor code (they run under ``vmap``).

Uncertainty follows the usual decomposition of a deep ensemble's predictive entropy
(Depeweg et al., `Decomposition of Uncertainty in Bayesian Deep Learning
<https://arxiv.org/abs/1710.07283>`_, 2018; Lakshminarayanan et al., `Simple and Scalable
Predictive Uncertainty Estimation using Deep Ensembles <https://arxiv.org/abs/1612.01474>`_,
2017)::

    predictive entropy  H[ mean_k p_k ]            (total)
    expected entropy    mean_k H[p_k]              (aleatoric)
    mutual information  H[mean_k p_k] - mean_k H[p_k]   (epistemic, ≥ 0)
"""

from __future__ import annotations

import math

import einops
import torch
from torch import Tensor


def _check_members(value: Tensor, name: str, expected: str, dims_ok: bool) -> None:
    if not isinstance(value, Tensor) or not dims_ok:
        found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"`{name}` must have a leading member axis, shape {expected}; got {found}."
        )


def _check_logits(logits: Tensor) -> None:
    dims_ok = isinstance(logits, Tensor) and logits.dim() == 3
    _check_members(logits, "logits", "(K, N, C)", dims_ok)


def mean_probs(logits: Tensor) -> Tensor:
    """Mean of the members' softmax probabilities: ``(K, N, C) -> (N, C)``."""
    _check_logits(logits)
    return torch.softmax(logits, dim=-1).mean(dim=0)


def mean_log_probs(logits: Tensor) -> Tensor:
    """Log of :func:`mean_probs`, computed stably (``logsumexp``): ``(K, N, C) -> (N, C)``.

    These are valid logits of the averaged ensemble, so every classification metric that
    takes logits (accuracy, NLL, ECE, F1) scores the ensemble directly.
    """
    _check_logits(logits)
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(logits.shape[0])


def mean_logits(logits: Tensor) -> Tensor:
    """Mean of the members' logits (a geometric mean of probabilities): ``(K, N, C) -> (N, C)``."""
    _check_logits(logits)
    return logits.mean(dim=0)


def vote(logits: Tensor) -> Tensor:
    """Majority vote of the members' argmax classes: ``(K, N, C) -> (N,)`` int64.

    Ties go to the smallest class index.
    """
    _check_logits(logits)
    classes = logits.shape[-1]
    counts = torch.nn.functional.one_hot(logits.argmax(dim=-1), classes).sum(dim=0)
    return counts.argmax(dim=-1)


def mean_binary_logits(logits: Tensor) -> Tensor:
    """Binary: the log-odds of the members' mean probability, ``(K, N, ...) -> (N, ...)``.

    ``log p̄ - log(1 - p̄)`` with ``p̄ = mean_k σ(x_k)``, computed stably (``logsumexp`` of
    ``log σ``): valid logits of the averaged ensemble, like :func:`mean_log_probs`.
    """
    dims_ok = isinstance(logits, Tensor) and logits.dim() >= 2
    _check_members(logits, "logits", "(K, N, ...)", dims_ok)
    log_positive = torch.logsumexp(torch.nn.functional.logsigmoid(logits), dim=0)
    return log_positive - torch.logsumexp(torch.nn.functional.logsigmoid(-logits), dim=0)


def mean_and_variance(predictions: Tensor) -> tuple[Tensor, Tensor]:
    """Regression: the members' mean and (population) variance, ``(K, N, ...) -> (N, ...)``.

    The variance between members is the ensemble's epistemic uncertainty for regression.
    """
    dims_ok = isinstance(predictions, Tensor) and predictions.dim() >= 2
    _check_members(predictions, "predictions", "(K, N, ...)", dims_ok)
    return predictions.mean(dim=0), predictions.var(dim=0, unbiased=False)


def _entropy(log_p: Tensor) -> Tensor:
    # 0 · log 0 = 0: classes with -inf logits (masked out) contribute nothing, not NaN.
    terms = torch.where(log_p > -torch.inf, log_p.exp() * log_p, torch.zeros_like(log_p))
    return -terms.sum(dim=-1)


def predictive_entropy(logits: Tensor) -> Tensor:
    """Entropy of the averaged prediction, ``H[mean_k p_k]`` in nats: ``(K, N, C) -> (N,)``."""
    return _entropy(mean_log_probs(logits))


def expected_entropy(logits: Tensor) -> Tensor:
    """Mean of the members' entropies, ``mean_k H[p_k]`` in nats: ``(K, N, C) -> (N,)``."""
    _check_logits(logits)
    return _entropy(torch.log_softmax(logits, dim=-1)).mean(dim=0)


def mutual_information(logits: Tensor) -> Tensor:
    """Epistemic uncertainty, ``H[mean_k p_k] - mean_k H[p_k]`` ≥ 0: ``(K, N, C) -> (N,)``.

    Zero when all members agree; large where they are each confident but disagree.
    """
    return (predictive_entropy(logits) - expected_entropy(logits)).clamp_min(0.0)


def disagreement(logits: Tensor) -> Tensor:
    """Fraction of members whose argmax differs from the ensemble vote: ``(K, N, C) -> (N,)``."""
    majority = vote(logits)
    return (logits.argmax(dim=-1) != majority).to(logits.dtype).mean(dim=0)


def pairwise_disagreement(logits: Tensor) -> Tensor:
    """Diversity: ``D[i, j]`` = fraction of examples where members i and j predict differently.

    ``(K, N, C) -> (K, K)``, symmetric with a zero diagonal (Kuncheva & Whitaker, 2003).
    """
    _check_logits(logits)
    classes = torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1])
    classes = classes.to(logits.dtype)
    agree = einops.einsum(classes, classes, "i n c, j n c -> i j") / logits.shape[1]
    return 1.0 - agree
