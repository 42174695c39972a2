"""Running means of step metrics over an epoch's batches, for :func:`funcmtl.train.fit`."""

from __future__ import annotations

import torch


class MetricMeans:
    """Running means of step metrics over batches, then over members.

    A task metric (``"task/metric"``) is ``NaN`` in a batch where the task has no label: that
    batch is skipped for it (``NaN`` if no batch measured it). Any other ``NaN`` (a diverged
    loss) is kept, so it shows. Tensor ops only until :meth:`result`: no sync per batch.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            value = value.detach()
            measured = ~value.isnan() if "/" in name else torch.ones_like(value, dtype=torch.bool)
            value = torch.where(measured, value, torch.zeros_like(value))
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + measured.to(value.dtype)

    def per_member(self, name: str) -> torch.Tensor:
        """The mean of ``name`` over the batches, per member (0-dim for one model)."""
        total, count = self.sums[name], self.counts[name]
        mean = total / torch.where(count > 0, count, torch.ones_like(count))
        return torch.where(count > 0, mean, torch.nan)

    def result(self) -> dict[str, float]:
        """``name -> mean`` over batches (per member), then over the members that have one."""
        out = {}
        for name, total in self.sums.items():
            count = self.counts[name]
            per_member = total / torch.where(count > 0, count, torch.ones_like(count))
            per_member = torch.where(count > 0, per_member, torch.nan)
            out[name] = float(per_member.double().nanmean() if "/" in name else per_member.mean())
        return out
