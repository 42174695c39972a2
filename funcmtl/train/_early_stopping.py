"""Early stopping: one rule, for a single value (:class:`EarlyStopping`) and for a tensor of
per-member values (:func:`funcmtl.train.fit`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

MODES = ("min", "max")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'min' or 'max'; got {mode!r}.")


def worst(mode: str) -> float:
    """The best value before any evaluation: every finite value improves on it."""
    return math.inf if mode == "min" else -math.inf


def improves(
    value: torch.Tensor, best: torch.Tensor, mode: str, min_delta: float = 0.0
) -> torch.Tensor:
    """Elementwise: ``value`` beats ``best`` by more than ``min_delta`` (a non-finite value,
    ``NaN`` included, never does)."""
    check_mode(mode)
    gain = best - value if mode == "min" else value - best
    return (gain > min_delta) & torch.isfinite(value)


class EarlyStopping(NamedTuple):
    """Stop when a monitored value has not improved for ``patience`` evaluations: the rule
    :func:`funcmtl.train.fit` applies to each member (:func:`improves`), for a loop of your
    own over one value.

    Immutable: :meth:`update` returns the next value. ``mode="min"`` for losses, ``"max"`` for
    accuracies. An improvement must beat the best by more than ``min_delta``.
    """

    patience: int
    mode: str = "min"
    min_delta: float = 0.0
    best: float = math.nan
    best_index: int = -1
    index: int = -1

    def update(self, value: float) -> EarlyStopping:
        check_mode(self.mode)
        index = self.index + 1
        best = worst(self.mode) if math.isnan(self.best) else self.best
        value_t = torch.tensor(value, dtype=torch.float64)
        if bool(improves(value_t, torch.tensor(best, dtype=torch.float64), self.mode,
                         self.min_delta)):
            return self._replace(best=value, best_index=index, index=index)
        return self._replace(index=index)

    @property
    def improved(self) -> bool:
        """Whether the latest update was the best so far."""
        return self.best_index == self.index

    @property
    def should_stop(self) -> bool:
        return self.index - self.best_index >= self.patience
