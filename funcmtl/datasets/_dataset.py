"""The multi-task dataset record: inputs, one target tensor per task, and the task specs.

A :class:`MultiTaskDataset` holds everything a multi-task run needs from the data side:
``inputs`` ``(N, F)`` float32, ``targets`` ``{task name: (N,) or (N, k)}`` and the
:class:`~funcmtl.mtl.Task` of every target. ``dataset.data`` is the ``(x, y)`` pytree that
:func:`funcmtl.data.batches` and :func:`funcmtl.train.fit` take.

Example:
    >>> train, val, test = fm.datasets.load_splits("multidigits", seed=0)
    >>> x, y = train.data                    # (N, 128), {"left": (N,), "right": (N,), "sum": (N,)}
    >>> x.shape, [task.name for task in train.tasks]
    (torch.Size([8000, 128]), ['left', 'right', 'sum'])
    >>> heads = {task.name: fm.mtl.output_head(16, task) for task in train.tasks}
    >>> model = fm.mtl.HardSharing(nn.Linear(128, 16), heads)
    >>> losses = fm.mtl.task_losses(train.tasks, model(x), y)
    >>> losses.shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from funcmtl import random
from funcmtl.mtl import Task, check_tasks


def _where(mask: Tensor) -> str:
    """``"N at rows [...]"`` for a bool mask ``(N,)`` or ``(N, k)``: the count and first rows."""
    rows = mask.reshape(mask.shape[0], -1).any(dim=1).nonzero().flatten()
    shown = rows[:5].tolist()
    more = ", ..." if rows.numel() > 5 else ""
    return f"{int(mask.sum())} at rows {shown}{more}"


@dataclass(frozen=True, eq=False)
class MultiTaskDataset:
    """A supervised multi-task dataset held in memory.

    Args:
        name: short name, e.g. ``"multidigits"`` or a file's stem.
        inputs: ``(N, F)`` float32 features.
        targets: ``task name -> (N,)`` int64 class ids (classification), or ``(N,)`` /
            ``(N, k)`` float32 values (binary and regression; ``k = output_size > 1``).
        tasks: one :class:`~funcmtl.mtl.Task` per target, in the order models and losses use.
        description: one line saying what the data is and where it comes from.

    Construct through a loader (:func:`~funcmtl.datasets.load`, :func:`from_file`, ...), which
    calls :meth:`validate`; call it yourself after building one by hand.
    """

    name: str
    inputs: Tensor
    targets: dict[str, Tensor]
    tasks: tuple[Task, ...]
    description: str = ""

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_features(self) -> int:
        """``F``, the width of ``inputs``."""
        return int(self.inputs.shape[1])

    @property
    def data(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The ``(inputs, targets)`` pytree for :func:`funcmtl.data.batches` and training."""
        return self.inputs, dict(self.targets)

    def subset(self, indices: Tensor | Sequence[int]) -> MultiTaskDataset:
        """The examples at ``indices`` (int64 ``(n,)``), in that order, as a new dataset."""
        index = torch.as_tensor(indices, dtype=torch.int64).flatten()
        n = len(self)
        if index.numel() and (int(index.min()) < -n or int(index.max()) >= n):
            raise ValueError(
                f"`indices` must lie in [0, {n}) for dataset {self.name!r} of {n} examples; "
                f"got values from {int(index.min())} to {int(index.max())}."
            )
        return MultiTaskDataset(
            self.name,
            self.inputs.index_select(0, index),
            {name: y.index_select(0, index) for name, y in self.targets.items()},
            self.tasks,
            self.description,
        ).validate()

    def validate(self) -> MultiTaskDataset:
        """Check shapes, dtypes, finiteness and label ranges; return ``self``.

        Raises:
            ValueError: one line naming the dataset, the task or feature at fault, what was
                expected, what was found and how to fix it.
        """
        where = f"Dataset {self.name!r}"
        if not isinstance(self.inputs, Tensor) or self.inputs.dim() != 2:
            found = tuple(self.inputs.shape) if isinstance(self.inputs, Tensor) else self.inputs
            raise ValueError(f"{where}: `inputs` must be a tensor (N, F); got {found!r}.")
        if self.inputs.dtype != torch.float32:
            raise ValueError(
                f"{where}: `inputs` must be float32; got {self.inputs.dtype} (use .float())."
            )
        n = len(self)
        if n == 0:
            raise ValueError(f"{where}: must hold at least one example; got N = 0.")
        bad = ~torch.isfinite(self.inputs)
        if bad.any():
            columns = bad.any(dim=0).nonzero().flatten().tolist()
            raise ValueError(
                f"{where}: `inputs` must be finite; found {int(torch.isnan(self.inputs).sum())} "
                f"NaN and {int(torch.isinf(self.inputs).sum())} inf values in feature columns "
                f"{columns[:10]}{' ...' if len(columns) > 10 else ''} (impute or drop them)."
            )
        tasks = check_tasks(self.tasks)
        names = [task.name for task in tasks]
        if not isinstance(self.targets, dict):
            raise ValueError(f"{where}: `targets` must be a dict task name -> Tensor.")
        missing = [name for name in names if name not in self.targets]
        extra = [name for name in self.targets if name not in names]
        if missing or extra:
            raise ValueError(
                f"{where}: `targets` must have exactly one entry per task {names}; "
                f"missing {missing}, extra {extra}."
            )
        for task in tasks:
            _check_target(where, task, self.targets[task.name], n)
        return self


def _check_target(where: str, task: Task, y: object, n: int) -> None:
    """Shape, dtype and values of one task's targets (see :meth:`MultiTaskDataset.validate`)."""
    what = f"{where}, task {task.name!r} ({task.kind})"
    if not isinstance(y, Tensor):
        raise ValueError(f"{what}: targets must be a Tensor; got {type(y).__name__}.")
    shape = (n, *task.output_shape) if task.kind != "classification" else (n,)
    if tuple(y.shape) != shape:
        raise ValueError(
            f"{what}: targets must have shape {shape} to match {n} inputs and "
            f"output_size={task.output_size}; got {tuple(y.shape)}."
        )
    mask = task.label_mask(y)
    present = torch.ones_like(y, dtype=torch.bool) if mask is None else mask
    if task.kind == "classification":
        if y.dtype != torch.int64:
            raise ValueError(f"{what}: labels must be int64 class ids; got {y.dtype} (.long()).")
        outside = present & ((y < 0) | (y >= task.output_size))
        if outside.any():
            row = int(outside.nonzero()[0, 0])
            raise ValueError(
                f"{what}: label {int(y[row])} at row {row} is outside the allowed range "
                f"[0, {task.output_size}) ({int(outside.sum())} such labels); fix the labels "
                "or raise output_size."
            )
        return
    if not y.is_floating_point():
        raise ValueError(f"{what}: targets must be floating point; got {y.dtype} (.float()).")
    nan_allowed = isinstance(task.mask_value, float) and math.isnan(task.mask_value)
    bad = torch.isinf(y) if nan_allowed else ~torch.isfinite(y)
    if bad.any():
        hint = "" if nan_allowed else " (mark missing labels with Task(mask_value=float('nan')))"
        raise ValueError(
            f"{what}: targets must be finite; found non-finite values {_where(bad)}{hint}."
        )
    if task.kind == "binary":
        off = present & ~torch.isnan(y) & (y != 0) & (y != 1)
        if off.any():
            raise ValueError(f"{what}: targets must be 0 or 1; found other values {_where(off)}.")


def split(
    dataset: MultiTaskDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[MultiTaskDataset, ...]:
    """Disjoint random parts of ``dataset`` in the given ``fractions`` (train, val, test).

    The example order is ``permutation(key(seed), N)`` and part ``i`` takes positions
    ``round(N · Σ_{j<i} f_j)`` to ``round(N · Σ_{j≤i} f_j)``: same seed, same split. For the
    built-in :func:`~funcmtl.datasets.multidigits`, whose examples share source images, use
    :func:`~funcmtl.datasets.load_splits` instead: it splits the images first.

    Returns:
        One :class:`MultiTaskDataset` per fraction, named ``"<name>/train"``, ``"/val"``,
        ``"/test"`` for three fractions (``"<name>/0"``, ``"/1"``, ... otherwise).
    """
    fractions = tuple(fractions)
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must be non-negative and sum to 1; got {fractions}.")
    n = len(dataset)
    order = random.permutation(random.key(seed), n)
    bounds = [round(n * sum(fractions[:i])) for i in range(len(fractions) + 1)]
    sizes = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    if 0 in sizes:
        raise ValueError(
            f"split of dataset {dataset.name!r} ({n} examples) by {fractions} gives an empty "
            f"part (sizes {sizes}); use more examples or larger fractions."
        )
    labels = ("train", "val", "test") if len(fractions) == 3 else range(len(fractions))
    return tuple(
        replace(dataset.subset(order[lo:hi]), name=f"{dataset.name}/{label}")
        for label, lo, hi in zip(labels, bounds[:-1], bounds[1:], strict=True)
    )
