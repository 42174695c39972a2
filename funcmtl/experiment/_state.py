"""The state of a run at step 0, as a pure function of ``--seed``.

``funcmtl train --seed S --members K`` is the library path::

    init_key, train_key = fm.random.split(fm.random.key(S))
    params, buffers = fm.ensemble.init_members(module, init_key, K)  # split(init_key, K)[k]
    fm.train.fit(step, states, data, key=train_key, members=K, shuffle="member", ...)

so member ``k`` is the same in a run of any size, and on whichever rank trains it; a run
resumed at step ``s`` replays exactly the same batches and keys (:mod:`funcmtl.train`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import distributed, mtl, random, train, tree
from funcmtl.experiment._build import Setup
from funcmtl.experiment._config import TrainConfig


def total_steps(config: TrainConfig, num_train: int) -> int:
    """The run's length in steps (what its learning-rate schedule spans)."""
    return train.schedule(num_train, config.batch_size, epochs=config.epochs,
                          steps=config.steps)[1]


def keys(config: TrainConfig) -> dict[str, Tensor]:
    """``{"init": key of the members' initialisation, "train": key of fit}``."""
    init_key, train_key = random.split(random.key(config.seed))
    return {"init": init_key, "train": train_key}


def initial_tree(
    config: TrainConfig, setup: Setup, device: torch.device, members: range | None = None
) -> train.FitState:
    """The checkpointed :class:`~funcmtl.train.FitState` at step 0, for ``members`` (default:
    all ``config.members``; a rank's shard under torchrun)."""
    members = range(config.members) if members is None else members
    params, buffers = distributed.init_shard(
        setup.module, keys(config)["init"], config.members, members, device=device
    )
    states = [
        mtl.init_state(p, b, setup.tasks, setup.optimizer, setup.aggregator, setup.weighting)
        for p, b in tree.unstack((params, buffers))
    ]
    return train.fit_state(
        tree.stack(states), members=len(members), keep_best=config.patience is not None
    )
