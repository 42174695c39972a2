"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE).

CGC (Tang et al., 2020, eqs. 2–4) gives every task ``k`` its own experts ``E_k`` next to the
shared experts ``E_s``; task ``k``'s gate mixes only those two groups::

    S^k(x) = [E_k,1(x) … E_k,m_k(x); E_s,1(x) … E_s,m_s(x)]     (task experts first)
    g^k(x) = softmax(W_g^k x) · S^k(x)                             W_g^k: no bias
    y_k    = t^k(g^k(x))

PLE (eq. 5) stacks ``num_levels`` such extraction layers. Level ``j`` feeds task ``k``'s
experts and gate with the previous level's task-``k`` output ``g^{k,j-1}``, and the shared
experts with a *shared* gate ``g^{s,j-1}`` that mixes all experts of level ``j - 1`` (every
task's and the shared ones); level 1 reads ``x`` everywhere and the last level has no shared
gate. Towers read the last level.

What is shared. :class:`CGC` is a :class:`SplitMultiTaskModel`: ``shared`` holds the shared experts,
each task's head its own experts, gate and tower. In a multi-level :class:`PLE` a task's
experts below the last level also feed the shared gate and so every task; a parameter is
task-specific only if no other task's output depends on it: the towers, the last level's
task experts and task gates, and the task gates of the level before it. All the rest (shared
experts, shared gates, lower task experts and gates) is reported as shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from funcmtl.mtl._architectures import (
    MultiTaskModel,
    SplitMultiTaskModel,
    TaskHeads,
    check_positive,
    output_head,
)
from funcmtl.mtl._mmoe import ExpertGroup, GatedTower, mix
from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["CGC", "PLE"]


class CGC(SplitMultiTaskModel):
    """Customized Gate Control: shared plus task-specific experts, one gate per task.

    Args:
        in_features: input size.
        num_shared_experts: ``m_s``, experts shared by all tasks (``self.shared``).
        num_task_experts: ``m_k``, experts owned by each task.
        expert_hidden: widths of each expert's ``Linear-ReLU`` layers.
        tasks: the task specs.
        tower_hidden: widths of each tower's hidden layers.

    Parameter names: ``shared.experts.<i>.…``, and per task
    ``tasks.heads.<task>.{own_experts,gate,tower}.…``.

    References:
        Tang et al., `Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
        Model for Personalized Recommendations <https://doi.org/10.1145/3383313.3412236>`_,
        2020.
    """

    def __init__(
        self,
        in_features: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_hidden: Sequence[int],
        tasks: Sequence[Task],
        tower_hidden: Sequence[int] = (),
    ) -> None:
        check_positive(in_features, "in_features")
        tasks = check_tasks(tasks)
        shared = ExpertGroup(
            in_features, num_shared_experts, expert_hidden, what="num_shared_experts"
        )
        heads = {}
        for task in tasks:
            own = ExpertGroup(in_features, num_task_experts, expert_hidden, what="num_task_experts")
            gate = nn.Linear(in_features, num_task_experts + num_shared_experts, bias=False)
            tower = output_head(shared.out_features, task, tower_hidden, hidden_name="tower_hidden")
            heads[task.name] = GatedTower(gate, tower, own_experts=own)
        super().__init__(shared, TaskHeads(heads))


class ExtractionLayer(nn.Module):
    """One PLE level: ``(task inputs, shared input) -> (task outputs, shared output)``.

    ``shared_gate=False`` (the last level) returns ``None`` as the shared output.
    """

    def __init__(
        self,
        in_features: int,
        task_names: Sequence[str],
        num_shared_experts: int,
        num_task_experts: int,
        expert_hidden: Sequence[int],
        *,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.shared_experts = ExpertGroup(
            in_features, num_shared_experts, expert_hidden, what="num_shared_experts"
        )
        self.task_experts = nn.ModuleDict(
            {
                t: ExpertGroup(
                    in_features, num_task_experts, expert_hidden, what="num_task_experts"
                )
                for t in task_names
            }
        )
        self.task_gates = nn.ModuleDict(
            {
                t: nn.Linear(in_features, num_task_experts + num_shared_experts, bias=False)
                for t in task_names
            }
        )
        every = len(task_names) * num_task_experts + num_shared_experts
        self.shared_gate = nn.Linear(in_features, every, bias=False) if shared_gate else None
        self.out_features = self.shared_experts.out_features

    def forward(
        self, task_inputs: Mapping[str, Tensor], shared_input: Tensor
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        shared = self.shared_experts(shared_input)
        own = {t: experts(task_inputs[t]) for t, experts in self.task_experts.items()}
        outputs = {
            t: mix(gate(task_inputs[t]), torch.cat([own[t], shared], dim=-2))
            for t, gate in self.task_gates.items()
        }
        if self.shared_gate is None:
            return outputs, None
        every = torch.cat([*own.values(), shared], dim=-2)
        return outputs, mix(self.shared_gate(shared_input), every)


class PLE(MultiTaskModel):
    """Progressive Layered Extraction: ``num_levels`` stacked CGC-style extraction layers.

    Args: as :class:`CGC`, plus ``num_levels`` (``>= 1``). With ``num_levels=1`` it computes
    the same function as :class:`CGC` (without the ``shared``/``tasks`` split).

    Parameter names: ``levels.<j>.{shared_experts,shared_gate}.…``,
    ``levels.<j>.{task_experts,task_gates}.<task>.…`` and ``towers.<task>.…``; see the module
    doc for which of them count as shared.

    References:
        Tang et al., `Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
        Model for Personalized Recommendations <https://doi.org/10.1145/3383313.3412236>`_,
        2020.
    """

    def __init__(
        self,
        in_features: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_hidden: Sequence[int],
        tasks: Sequence[Task],
        tower_hidden: Sequence[int] = (),
        num_levels: int = 2,
    ) -> None:
        check_positive(in_features, "in_features")
        check_positive(num_levels, "num_levels")
        tasks = check_tasks(tasks)
        super().__init__([t.name for t in tasks])
        levels = []
        for j in range(num_levels):
            levels.append(
                ExtractionLayer(
                    in_features if j == 0 else levels[-1].out_features,
                    self.task_names,
                    num_shared_experts,
                    num_task_experts,
                    expert_hidden,
                    shared_gate=j < num_levels - 1,
                )
            )
        self.levels = nn.ModuleList(levels)
        width = levels[-1].out_features
        self.towers = nn.ModuleDict(
            {t.name: output_head(width, t, tower_hidden, hidden_name="tower_hidden") for t in tasks}
        )
        self.num_levels = num_levels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        task_inputs: dict[str, Tensor] = {t: x for t in self.task_names}
        shared: Tensor | None = x
        for level in self.levels:
            task_inputs, shared = level(task_inputs, shared)
        return {t: tower(task_inputs[t]) for t, tower in self.towers.items()}

    def _owner(self, name: str) -> str | None:
        parts = name.split(".")
        if parts[0] == "towers":
            return parts[1]
        level, group, last = int(parts[1]), parts[2], self.num_levels - 1
        # Task experts below the last level feed the shared gate, hence every task; a task
        # gate feeds only its own task's next level, which is task-specific from `last` on.
        if (group == "task_experts" and level == last) or (
            group == "task_gates" and level >= last - 1
        ):
            return parts[3]
        return None
