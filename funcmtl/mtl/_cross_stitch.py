"""Cross-stitch networks: per-task columns that exchange activations through learned units.

Each task has its own column of stages. After stage ``l`` the activations ``h_1 … h_T`` of
all columns go through a cross-stitch unit, a learned ``(T, T)`` matrix ``α`` (Misra et al.,
2016, eq. 1, written for ``T`` tasks)::

    h̃_t = Σ_s α_ts h_s

and the next stage of column ``t`` reads ``h̃_t``. Following the paper, ``α`` starts at
``α_same`` on the diagonal and ``α_diff`` off it (the paper's best: ``(0.9, 0.1)``, rows that
sum to 1); with ``T > 2`` tasks each off-diagonal entry is ``α_diff / (T − 1)`` so that rows
still sum to ``α_same + α_diff``. ``(1, 0)`` makes the columns independent networks.

What is shared. The cross-stitch units (``stitches.<l>.weight``) are the only parameters
that tie tasks together by construction; they are reported as shared, while column ``t``
and head ``t`` (``columns.<t>.…``, ``heads.<t>.…``) are task ``t``'s. Note that once ``α``
has off-diagonal mass every task's loss also reaches the other columns through the units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from funcmtl._masking import format_shape
from funcmtl.mtl._architectures import MultiTaskModel, check_positive, mlp, module_dict, output_head
from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["CrossStitch", "CrossStitchUnit", "cross_stitch_mlp"]


class CrossStitchUnit(nn.Module):
    """A learned linear mix of the tasks' activations: ``(T, ...) -> (T, ...)``.

    ``weight`` is ``α (T, T)``; ``reset_parameters`` sets it to ``α_same`` on the diagonal
    and ``α_diff / (T − 1)`` off it (deterministic, so ``fm.init`` keeps it for any key).
    """

    def __init__(self, num_tasks: int, alpha_same: float = 0.9, alpha_diff: float = 0.1) -> None:
        super().__init__()
        check_positive(num_tasks, "num_tasks")
        for name, value in (("alpha_same", alpha_same), ("alpha_diff", alpha_diff)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value))
            ):
                raise ValueError(f"`{name}` must be a finite float; got {value!r}.")
        self.alpha_same, self.alpha_diff = float(alpha_same), float(alpha_diff)
        self.weight = nn.Parameter(torch.empty(num_tasks, num_tasks))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        num_tasks = self.weight.shape[0]
        off_diagonal = self.alpha_diff / max(num_tasks - 1, 1)
        with torch.no_grad():
            self.weight.fill_(off_diagonal)
            self.weight.fill_diagonal_(self.alpha_same)

    def forward(self, stacked: Tensor) -> Tensor:
        return torch.tensordot(self.weight, stacked, dims=1)

    def extra_repr(self) -> str:
        return f"num_tasks={self.weight.shape[0]}, alpha_same={self.alpha_same}, " + (
            f"alpha_diff={self.alpha_diff}"
        )


class CrossStitch(MultiTaskModel):
    """Per-task columns with a cross-stitch unit after every stage, then per-task heads.

    Args:
        columns: ``task -> [stage_1, …, stage_L]``; every column has ``L`` stages, and at
            each depth all stages' outputs must have one shape (so they can be mixed).
        heads: ``task -> (h_L -> output)``, the same task names.
        alpha_same, alpha_diff: the units' initial values (see the module doc).

    References:
        Misra et al., `Cross-stitch Networks for Multi-task Learning
        <https://arxiv.org/abs/1604.03539>`_, 2016.
    """

    def __init__(
        self,
        columns: Mapping[str, Sequence[nn.Module]],
        heads: Mapping[str, nn.Module],
        alpha_same: float = 0.9,
        alpha_diff: float = 0.1,
    ) -> None:
        if not isinstance(columns, Mapping) or not isinstance(heads, Mapping):
            raise ValueError("`columns` and `heads` must be dicts keyed by task name.")
        if set(heads) != set(columns):
            raise ValueError(
                f"`heads` must have the tasks of `columns` {list(columns)}; got {list(heads)}."
            )
        stages = {}
        for task, column in columns.items():
            if isinstance(column, nn.Module) and not isinstance(column, nn.ModuleList):
                raise ValueError(
                    f"`columns[{task!r}]` must be a list of stage modules (one per cross-stitch"
                    f" unit); got a single {type(column).__name__}."
                )
            stages[task] = nn.ModuleList(column)
        depths = {task: len(column) for task, column in stages.items()}
        if len(set(depths.values())) != 1 or 0 in depths.values():
            raise ValueError(
                f"every column must have the same number (>= 1) of stages; got {depths}."
            )
        column_dict = module_dict(stages, "columns")
        super().__init__(tuple(column_dict))
        self.columns = column_dict
        self.heads = module_dict({task: heads[task] for task in self.task_names}, "heads")
        depth = next(iter(depths.values()))
        self.stitches = nn.ModuleList(
            CrossStitchUnit(len(self.task_names), alpha_same, alpha_diff) for _ in range(depth)
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        activations = [x] * len(self.task_names)
        for depth, unit in enumerate(self.stitches):
            activations = [
                column[depth](h)
                for column, h in zip(self.columns.values(), activations, strict=True)
            ]
            shapes = {tuple(h.shape) for h in activations}
            if len(shapes) != 1:
                found = ", ".join(format_shape(s) for s in sorted(shapes))
                raise ValueError(
                    f"cross-stitch unit {depth} mixes the columns' stage-{depth} outputs, which "
                    f"must have one shape; got {found}."
                )
            activations = list(unit(torch.stack(activations)).unbind(0))
        return {t: head(h) for (t, head), h in zip(self.heads.items(), activations, strict=True)}

    def _owner(self, name: str) -> str | None:
        parts = name.split(".")
        return None if parts[0] == "stitches" else parts[1]


def cross_stitch_mlp(
    in_features: int,
    hidden: Sequence[int],
    tasks: Sequence[Task],
    alpha_same: float = 0.9,
    alpha_diff: float = 0.1,
    dropout: float = 0.0,
) -> CrossStitch:
    """A :class:`CrossStitch` of per-task MLPs: one ``Linear-ReLU(-Dropout)`` stage per width
    in ``hidden``, each followed by a cross-stitch unit, then an output layer per task."""
    check_positive(in_features, "in_features")
    tasks = check_tasks(tasks)
    if len(hidden) == 0:
        raise ValueError("`hidden` must be non-empty: each hidden layer ends in a unit.")
    columns, heads = {}, {}
    for task in tasks:
        layers = mlp(in_features, hidden, dropout=dropout)
        per_stage = len(layers) // len(hidden)
        columns[task.name] = [
            nn.Sequential(*layers[i : i + per_stage]) for i in range(0, len(layers), per_stage)
        ]
        heads[task.name] = output_head(hidden[-1], task)
    return CrossStitch(columns, heads, alpha_same, alpha_diff)
