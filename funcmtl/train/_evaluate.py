"""Eval-mode outputs and metrics of a model on a whole dataset, in batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from funcmtl import data as data_lib
from funcmtl import tree
from funcmtl.train._state import Params, PyTree


def predict(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    inputs: PyTree,
    *,
    batch_size: int = 1024,
    example_axis: int = 0,
) -> Any:
    """Eval-mode outputs for all of ``inputs``, computed in batches and concatenated.

    Outputs may be a tensor, a dict of tensors (multi-task heads) or a list/tuple of them;
    ``example_axis`` is where their batch axis is (1 for an ensemble's ``(K, N, ...)``).
    """
    chunks = [apply(params, buffers, x)[0] for x in data_lib.batches(inputs, batch_size)]
    return tree.map(lambda *parts: torch.cat(parts, dim=example_axis), *chunks)


def evaluate(
    apply: Callable[..., tuple[Any, Params]],
    params: Params,
    buffers: Params,
    dataset: tuple[PyTree, PyTree],
    metrics: dict[str, Callable[[Any, Any], torch.Tensor]],
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Metrics of the model on the whole of ``dataset = (x, y)`` (not a mean of batch means,
    so F1, R² and ECE are exact)."""
    x, y = dataset
    outputs = predict(apply, params, buffers, x, batch_size=batch_size)
    return {name: float(fn(outputs, y)) for name, fn in metrics.items()}
