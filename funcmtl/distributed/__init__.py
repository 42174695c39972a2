"""Beyond one machine: ``torch.distributed`` under ``torchrun``.

Two kinds of parallelism, both exact against a single process:

- **ensemble sharding** — rank r trains members :func:`shard` ``(K, r, W)`` of a K-member
  ensemble with no communication, and :func:`all_gather_members` assembles the full
  ensemble at the end;
- **data parallelism** — every rank holds the whole model and a shard of each batch;
  gradients (:func:`make_step`), or for multi-task training the per-task Jacobian
  (:func:`data_parallel`), are all-reduced before the update.

Without torchrun, :func:`init` returns a 1-process world in which all of this is the
identity, so the same script runs on a laptop and on a cluster.
"""

from funcmtl.distributed._collectives import (
    all_gather_concat,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast,
)
from funcmtl.distributed._context import Context, DistributedError, init
from funcmtl.distributed._mtl import data_parallel, task_counts
from funcmtl.distributed._shard import (
    all_gather_members,
    init_shard,
    shard,
    shard_batch,
    take_shard,
)
from funcmtl.distributed._step import make_step

__all__ = [
    "Context",
    "DistributedError",
    "all_gather_concat",
    "all_gather_members",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast",
    "data_parallel",
    "init",
    "init_shard",
    "make_step",
    "shard",
    "shard_batch",
    "take_shard",
    "task_counts",
]
