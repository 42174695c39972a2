"""Ensemble prediction and evaluation: every member at once, then combined."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from funcmtl import train
from funcmtl.ensemble._combine import mean_log_probs

PyTree = Any
Params = dict[str, Tensor]
Metric = Callable[[Any, Any], Tensor]


def predict(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    inputs: PyTree,
    *,
    batch_size: int = 1024,
    chunk_size: int | None = None,
) -> Any:
    """Every member's eval-mode outputs: ``(K, N, ...)`` (or a dict of such, per task).

    Args:
        apply: the single-model function from :func:`funcmtl.functional`.
        params, buffers: stacked, leading member axis ``K``.
        inputs: pytree with a leading example axis ``N`` (shared by all members).
        batch_size: examples per forward pass.
        chunk_size: members per vmap chunk (bounds memory).
    """
    every_member = torch.func.vmap(
        lambda p, b, x: apply(p, b, x), in_dims=(0, 0, None), chunk_size=chunk_size
    )
    return train.predict(
        every_member, params, buffers, inputs, batch_size=batch_size, example_axis=1
    )


def member_scores(metric: Metric, outputs: Any, targets: Any) -> Tensor:
    """``metric`` for each member: outputs ``(K, N, ...)`` -> scores ``(K,)``."""
    return torch.func.vmap(metric, in_dims=(0, None))(outputs, targets)


def evaluate(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    dataset: tuple[PyTree, Any],
    metrics: dict[str, Metric],
    *,
    combine: Callable[[Tensor], Tensor] = mean_log_probs,
    batch_size: int = 1024,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """The ensemble's metrics next to the mean member's, on all of ``dataset = (x, y)``.

    Returns ``{"ensemble_<name>": ..., "member_<name>": ...}``, where the ensemble scores
    ``combine(outputs)`` (default: the log of the mean probability, for classifiers; use
    ``lambda p: p.mean(0)`` for regression) and the member value is the mean over members.
    """
    x, y = dataset
    outputs = predict(apply, params, buffers, x, batch_size=batch_size, chunk_size=chunk_size)
    combined = combine(outputs)
    scores = {}
    for name, metric in metrics.items():
        scores[f"ensemble_{name}"] = float(metric(combined, y))
        scores[f"member_{name}"] = float(member_scores(metric, outputs, y).mean())
    return scores
