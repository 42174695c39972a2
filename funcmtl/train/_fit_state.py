"""A run in progress as a pytree (:class:`FitState`), and its per-member early stopping."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from funcmtl import tree
from funcmtl.train._early_stopping import check_mode, improves, worst
from funcmtl.train._state import Params


class FitState(NamedTuple):
    """A run in progress, as a pytree of tensors: pass it back to :func:`fit` to continue.

    For an ensemble every leaf has the leading member axis ``K`` (so a checkpoint of it can be
    sharded and gathered like the members); for a single model the counters are 0-dim.
    """

    state: Any  # the train state (TrainState, MTLState, ...), stacked for an ensemble
    best_params: Params  # the parameters of each member's best evaluation ({} if not kept)
    best_buffers: Params
    best_value: torch.Tensor  # () or (K,) float64: the best monitored value; ±inf at first
    waiting: torch.Tensor  # () or (K,) int64: evaluations since the best
    best_step: torch.Tensor  # () or (K,) int64: the step of the best evaluation (0: none yet)
    step: torch.Tensor  # () or (K,) int64: steps of the schedule done

    @property
    def best_state(self) -> Any:
        """The train state with each member's best parameters and buffers (the current
        ones when the best is not kept); the other fields (optimizer state, counters) are the
        current ones, ``best_step`` tells when the best was."""
        if not self.best_params:
            return self.state
        return self.state._replace(params=self.best_params, buffers=self.best_buffers)


def device_of(state: Any) -> torch.device:
    leaves = tree.leaves(state.params)
    return leaves[0].device if leaves else torch.device("cpu")


def fit_state(
    state: Any, *, members: int | None = None, keep_best: bool = True, mode: str = "min"
) -> FitState:
    """The :class:`FitState` of a fresh run from the train state ``state`` (``members``: the
    size of its leading member axis, for a stacked ensemble)."""
    check_mode(mode)
    shape = () if members is None else (members,)
    device = device_of(state)
    copy = (lambda t: tree.map(torch.clone, t)) if keep_best else (lambda t: {})
    return FitState(
        state=state,
        best_params=copy(state.params),
        best_buffers=copy(state.buffers),
        best_value=torch.full(shape, worst(mode), dtype=torch.float64, device=device),
        waiting=torch.zeros(shape, dtype=torch.int64, device=device),
        best_step=torch.zeros(shape, dtype=torch.int64, device=device),
        step=torch.zeros(shape, dtype=torch.int64, device=device),
    )


def update_best(run: FitState, value: torch.Tensor, mode: str, min_delta: float,
                 patience: int | None) -> FitState:
    """Each member's best value, its parameters at it, and the evaluations since; a member out
    of patience is left as it stopped (what it would be in a run of its own)."""
    value = value.to(run.best_value.device).expand_as(run.best_value)
    active = run.waiting < patience if patience is not None else torch.ones_like(
        run.waiting, dtype=torch.bool)
    better = improves(value, run.best_value, mode, min_delta) & active
    kept = bool(run.best_params)
    return run._replace(
        best_params=tree.select(better, run.state.params, run.best_params) if kept else {},
        best_buffers=tree.select(better, run.state.buffers, run.best_buffers) if kept else {},
        best_value=torch.where(better, value, run.best_value),
        waiting=torch.where(better, torch.zeros_like(run.waiting),
                            run.waiting + active.to(run.waiting.dtype)),
        best_step=torch.where(better, run.step.to(run.best_step.device), run.best_step),
    )
