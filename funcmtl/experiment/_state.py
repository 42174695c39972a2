"""The state of a run at step 0 and everything random in it, as pure functions of ``--seed``.

Member ``k``'s initialisation key is ``fold_in(init_key, k)``, its data order in epoch ``e``
is a permutation from ``fold_in(fold_in(data_key, k), e)`` and its step key
``fold_in(fold_in(step_key, s), k)``: a run resumed at step ``s`` replays exactly the same
batches and keys, and a rank training a shard of the members trains exactly those members.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from funcmtl import functional, mtl, random, tree
from funcmtl.experiment._build import Setup
from funcmtl.experiment._config import TrainConfig


def steps_per_epoch(config: TrainConfig, num_train: int) -> int:
    return math.ceil(num_train / config.batch_size)


def total_steps(config: TrainConfig, num_train: int) -> int:
    if config.steps is not None:
        return config.steps
    return config.epochs * steps_per_epoch(config, num_train)


def keys(config: TrainConfig) -> dict[str, Tensor]:
    init_key, data_key, step_key = random.split(random.key(config.seed), 3)
    return {"init": init_key, "data": data_key, "step": step_key}


def initial_tree(
    config: TrainConfig, setup: Setup, device: torch.device, members: range | None = None
) -> dict[str, Any]:
    """The checkpointed tree at step 0: ``{"state", "best", "step"}``, for ``members`` (default:
    all ``config.members``; a rank's shard under torchrun)."""
    run_keys = keys(config)
    members = range(config.members) if members is None else members
    states = []
    for k in members:
        params, buffers = functional.init(
            setup.module, random.fold_in(run_keys["init"], k), device=device
        )
        states.append(
            mtl.init_state(
                params, buffers, setup.tasks, setup.optimizer, setup.aggregator, setup.weighting
            )
        )
    state = tree.stack(states)
    best: dict[str, Any] = {}
    if config.patience is not None:
        best = {
            "params": tree.map(torch.clone, state.params),
            "buffers": tree.map(torch.clone, state.buffers),
            "loss": torch.full((len(members),), math.inf, dtype=torch.float64, device=device),
            "bad": torch.zeros(len(members), dtype=torch.int64, device=device),
        }
    return {"state": state, "best": best, "step": torch.zeros((), dtype=torch.int64)}


def epoch_order(config: TrainConfig, members: range, epoch: int, n: int) -> Tensor:
    """``(len(members), n)``: each member's example order in ``epoch``."""
    data_key = keys(config)["data"]
    return torch.stack(
        [
            random.permutation(random.fold_in(random.fold_in(data_key, k), epoch), n)
            for k in members
        ]
    )
