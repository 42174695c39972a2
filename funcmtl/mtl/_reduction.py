"""The step's reduction hook: how one process's share of a batch becomes the whole batch's.

:func:`funcmtl.mtl.make_step` calls these hooks at fixed points of its data flow; the default
:data:`LOCAL` is the identity (one process holds the batch). ``fm.distributed.data_parallel``
returns a :class:`Reduction` whose hooks shard the batch and all-reduce the per-task
quantities *before* aggregation, so this layer needs nothing from the distributed one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from torch import Tensor

from funcmtl.mtl._pertask import TaskGradients
from funcmtl.mtl._tasks import Task


class Reduction(NamedTuple):
    """The hooks of :func:`funcmtl.mtl.make_step` (``reduction=``)."""

    check_path: Callable[[str], None]  # raise ValueError for a path that cannot be exact
    local_batch: Callable[[Any], Any]  # the step's batch -> this process's examples
    local_key: Callable[[Tensor], Tensor]  # forward key -> this process's (own dropout masks)
    # (local TaskGradients, tasks, local batch, path, gather_rows) -> the full batch's
    task_gradients: Callable[[TaskGradients, Sequence[Task], Any, str, bool], TaskGradients]
    sum: Callable[[Any], Any]  # sum of a pytree over the processes (the exact path's rows)


def _same(value: Any, *_: Any) -> Any:
    return value


LOCAL = Reduction(
    check_path=lambda path: None,
    local_batch=_same,
    local_key=_same,
    task_gradients=_same,
    sum=_same,
)
"""The identity: the batch is all on this process."""
