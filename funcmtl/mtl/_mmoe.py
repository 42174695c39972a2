"""Multi-gate Mixture-of-Experts (MMoE): shared experts, one softmax gate per task.

With experts ``f_1 … f_E`` (shared by all tasks) and, for task ``k``, a gate ``g^k`` and a
tower ``h^k`` (Ma et al., 2018, eqs. 5–6)::

    g^k(x) = softmax(W_gk x)                      W_gk: (E, in_features), no bias
    f^k(x) = Σ_i g^k(x)_i f_i(x)
    y_k    = h^k(f^k(x))

The experts are the shared parameters (``shared.experts.<i>.…``); each task's gate and tower
are its own (``tasks.heads.<task>.gate.…``, ``tasks.heads.<task>.tower.…``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from funcmtl.mtl._architectures import (
    SplitMultiTaskModel,
    TaskHeads,
    check_positive,
    check_sizes,
    mlp,
    output_head,
)
from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["MMoE", "ExpertGroup", "GatedTower"]


class ExpertGroup(nn.Module):
    """``count`` MLP experts ``Linear-ReLU`` over ``hidden`` (ReLU after the last layer too),
    stacked: ``(..., in_features) -> (..., count, hidden[-1])``."""

    def __init__(self, in_features: int, count: int, hidden: Sequence[int], *, what: str) -> None:
        super().__init__()
        check_positive(count, what)
        hidden = check_sizes(hidden, "expert_hidden", allow_empty=False)
        layers = [mlp(in_features, hidden, hidden_name="expert_hidden") for _ in range(count)]
        self.experts = nn.ModuleList(nn.Sequential(*expert) for expert in layers)
        self.out_features = hidden[-1]

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=-2)


def mix(gate_logits: Tensor, experts: Tensor) -> Tensor:
    """``Σ_i softmax(gate_logits)_i experts_i``: ``(..., E)``, ``(..., E, D) -> (..., D)``."""
    weights = torch.softmax(gate_logits, dim=-1)
    return (weights.unsqueeze(-1) * experts).sum(-2)


class GatedTower(nn.Module):
    """One task's head over a set of experts: ``tower(mix(gate(x), experts))``.

    ``forward(z, x)`` takes the shared experts ``z (..., E_s, D)`` and the input ``x``. With
    ``own_experts`` (CGC / PLE) the task's experts are evaluated on ``x`` and put *before*
    the shared ones, ``[E_k; E_s]``, so the gate has ``E_k + E_s`` outputs.
    """

    def __init__(
        self, gate: nn.Module, tower: nn.Module, own_experts: ExpertGroup | None = None
    ) -> None:
        super().__init__()
        self.gate = gate
        self.tower = tower
        self.own_experts = own_experts

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        if self.own_experts is not None:
            z = torch.cat([self.own_experts(x), z], dim=-2)
        return self.tower(mix(self.gate(x), z))


class MMoE(SplitMultiTaskModel):
    """Multi-gate Mixture-of-Experts.

    Args:
        in_features: input size.
        num_experts: ``E``, the number of shared experts.
        expert_hidden: widths of each expert's layers; the expert output has size
            ``expert_hidden[-1]``.
        tasks: the task specs; one gate and one tower each.
        tower_hidden: widths of each tower's hidden layers before its output layer.

    ``self.shared(x)`` is all experts' outputs ``(N, E, D)``; ``self.tasks(z, x)`` gates and
    towers them.

    References:
        Ma et al., `Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts <https://doi.org/10.1145/3219819.3220007>`_, 2018.
    """

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        expert_hidden: Sequence[int],
        tasks: Sequence[Task],
        tower_hidden: Sequence[int] = (),
    ) -> None:
        check_positive(in_features, "in_features")
        tasks = check_tasks(tasks)
        experts = ExpertGroup(in_features, num_experts, expert_hidden, what="num_experts")
        heads = {
            t.name: GatedTower(
                nn.Linear(in_features, num_experts, bias=False),
                output_head(experts.out_features, t, tower_hidden, hidden_name="tower_hidden"),
            )
            for t in tasks
        }
        super().__init__(experts, TaskHeads(heads))
