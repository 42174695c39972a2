"""Early stopping as an immutable value: ``stopper = stopper.update(value)``."""

from __future__ import annotations

import math
from typing import NamedTuple


class EarlyStopping(NamedTuple):
    """Stop when a monitored value has not improved for ``patience`` evaluations.

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
        if self.mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'; got {self.mode!r}.")
        sign = 1.0 if self.mode == "min" else -1.0
        index = self.index + 1
        improved = math.isnan(self.best) or sign * (self.best - value) > self.min_delta
        if improved and math.isfinite(value):
            return self._replace(best=value, best_index=index, index=index)
        return self._replace(index=index)

    @property
    def improved(self) -> bool:
        """Whether the latest update was the best so far."""
        return self.best_index == self.index

    @property
    def should_stop(self) -> bool:
        return self.index - self.best_index >= self.patience
