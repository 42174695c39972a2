"""How a run spreads over the ranks of a torchrun job, and the per-step agreement between them.

With ``members > 1`` each rank trains a contiguous shard of the members (vmapped); with one
member every rank holds the model and the step is data-parallel. Each step the ranks agree,
in one tiny all-reduce, on two things: how many members produced a non-finite step, and
whether any rank was asked to stop (:mod:`funcmtl.experiment._signals`).
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any

import torch

from funcmtl import distributed, tree
from funcmtl.experiment._config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which members this rank trains, and whether the ranks share one model data-parallel."""

    ctx: distributed.Context
    members: range
    data_parallel: Any  # a funcmtl.mtl.Reduction (fm.distributed.data_parallel) or None
    num_members: int

    @classmethod
    def of(cls, config: TrainConfig, ctx: distributed.Context, num_train: int) -> Layout:
        world = ctx.world_size
        if world == 1:
            return cls(ctx, range(config.members), None, config.members)
        if config.members == 1:
            last = num_train % config.batch_size
            if 0 < last < world:
                raise ValueError(
                    f"data-parallel training over {world} ranks needs every batch to have at "
                    f"least {world} examples; the last batch of each epoch has {last}: pick "
                    "another --batch-size."
                )
            return cls(ctx, range(1), distributed.data_parallel(ctx), 1)
        if config.members < world:
            raise ValueError(
                f"--members {config.members} cannot be sharded over {world} ranks: use "
                f"--members >= {world} (an ensemble) or --members 1 (data parallel)."
            )
        return cls(ctx, distributed.shard(config.members, ctx.rank, world), None,
                   config.members)

    @property
    def sharded(self) -> bool:
        """The ranks hold different members."""
        return self.data_parallel is None and self.ctx.world_size > 1

    def gather(self, stacked: Any) -> Any:
        """The values of all members from each rank's shard (identity without sharding)."""
        if not self.sharded:
            return stacked
        return distributed.all_gather_members(stacked, self.ctx, self.num_members)

    def count(self, value: int) -> int:
        """``value`` summed over the ranks that hold different members."""
        if not self.sharded:
            return value
        return int(distributed.all_reduce_sum(torch.tensor([value]), self.ctx)[0])

    def agree(self, bad_members: int, signum: int | None) -> tuple[int, int | None]:
        """``(members with a non-finite step on any rank, the stop signal any rank got)``:
        one all-reduce of three integers in a multi-process world, none in a 1-process one
        (SIGTERM wins over SIGINT when ranks got different signals)."""
        if self.ctx.world_size == 1:
            return bad_members, signum
        bad = bad_members if self.sharded else 0  # data-parallel: the same on every rank
        flags = [bad, int(signum == signal.SIGINT), int(signum == signal.SIGTERM)]
        total = distributed.all_reduce_sum(torch.tensor(flags), self.ctx).tolist()
        agreed = signal.SIGTERM if total[2] else signal.SIGINT if total[1] else None
        return (total[0] if self.sharded else bad_members), agreed

    def vmap_step(self, step_fn: Callable) -> Callable:
        """``step(state, batch, keys)`` over this rank's stacked members.

        A vmap over one member takes other kernels than a vmap over several (a batch of one
        folds into plain matrix products, which round differently), so a rank holding one
        member of an ensemble runs it twice over and keeps the first: its member then is
        bit-identical to that member in a single-process run. The spare copy costs nothing
        on the wall clock when another rank has two members; with as many members as ranks
        it doubles the step's work.
        """
        if self.data_parallel is not None:  # a data-parallel step communicates: run eagerly

            def eager(state, batch, keys):
                first = lambda x: x[0]  # noqa: E731
                new, metrics = step_fn(tree.map(first, state), tree.map(first, batch), keys[0])
                return tree.map(lambda x: x[None], new), tree.map(lambda x: x[None], metrics)

            return eager
        vstep = torch.func.vmap(step_fn, in_dims=(0, 0, 0))
        if not (len(self.members) == 1 and self.num_members > 1):
            return vstep

        def doubled(state, batch, keys):
            twice = lambda x: torch.cat([x, x])  # noqa: E731
            new, metrics = vstep(tree.map(twice, state), tree.map(twice, batch), twice(keys))
            return tree.map(lambda x: x[:1], new), tree.map(lambda x: x[:1], metrics)

        return doubled
