"""The learnable log-scale weighting shared by IMTL-L and uncertainty weighting."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from funcmtl.weightings._base import Weighting, check_init, check_losses


def log_scale_weighting(
    method: str, state_type: type[NamedTuple], sign: float, lr: Any, init_value: float
) -> Weighting:
    """Weights ``w = e^{σs}`` of learnable ``s (T,)``, one SGD step per call on
    ``Σₜ e^{σsₜ}Lₜ − σsₜ``, whose gradient is ``∂𝓛/∂sₜ = σ (wₜ Lₜ − 1)``.

    ``sign`` is ``σ``: ``+1`` for IMTL-L's scales, ``−1`` for Kendall's log-variances.
    ``state_type`` is the method's one-field state NamedTuple holding ``s``.
    """

    def init(num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None):
        check_init(num_tasks, dtype)
        return state_type(torch.full((num_tasks,), float(init_value), dtype=dtype, device=device))

    def weights(
        losses: Tensor,
        state: Any,
        *,
        key: Tensor | None = None,
        grad_norms: Tensor | None = None,
    ) -> tuple[Tensor, Any]:
        del key, grad_norms
        (s,) = state
        check_losses(losses, method, s.shape[0])
        w = torch.exp(sign * s)
        grad_s = sign * (w * losses.detach().to(s.dtype) - 1.0)
        return w.to(losses.dtype), state_type(s - lr * grad_s)

    return Weighting(init, weights)
