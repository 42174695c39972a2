"""Soft parameter sharing: one tower per task, tied by a penalty instead of shared weights.

No parameter is shared; each task has its own network. A regulariser pulls corresponding
parameters of different towers together (Duong et al., 2015)::

    Ω(θ) = Σ_{a < b} Σ_{n ∈ coupled} ‖θ_a,n − θ_b,n‖²

added to the loss as ``λ · Ω``. :meth:`SoftSharing.coupling_penalty` computes ``Ω`` from a
params dict, purely, so it belongs inside a functional loss (and runs under ``vmap``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from funcmtl.mtl._architectures import MultiTaskModel, check_positive, mlp, module_dict, output_head
from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["SoftSharing", "soft_sharing_mlp"]


class SoftSharing(MultiTaskModel):
    """Independent per-task towers, ``forward(x) = {t: towers[t](x)}``.

    Args:
        towers: ``task name -> (x -> output)``; parameters are ``towers.<task>.…``.
        coupled: the parameter names *inside a tower* (e.g. ``"0.weight"``) that the penalty
            ties together; each must exist with one shape in every tower. Default: every name
            that does.

    All parameters are task-specific: ``shared_parameter_names()`` is empty.

    References:
        Duong et al., `Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a
        Neural Network Parser <https://doi.org/10.3115/v1/P15-2139>`_, 2015.
    """

    def __init__(
        self, towers: Mapping[str, nn.Module], coupled: Sequence[str] | None = None
    ) -> None:
        towers = module_dict(towers, "towers")
        super().__init__(tuple(towers))
        self.towers = towers
        shapes = [{n: p.shape for n, p in tower.named_parameters()} for tower in towers.values()]

        def matches(name: str) -> bool:
            return all(name in s and s[name] == shapes[0][name] for s in shapes)

        if coupled is None:
            coupled = [name for name in shapes[0] if matches(name)]
            if not coupled:
                raise ValueError(
                    "SoftSharing found no parameter name with one shape in every tower; "
                    "the coupling penalty would be empty. Pass `coupled` or align the towers."
                )
        elif isinstance(coupled, str) or not isinstance(coupled, Sequence):
            raise ValueError(f"`coupled` must be a sequence of names; got {coupled!r}.")
        bad = [name for name in coupled if not matches(name)]
        if bad:
            raise ValueError(
                f"`coupled` names must exist with one shape in every tower; {bad} do not "
                f"(tower parameters: {sorted(shapes[0])})."
            )
        self.coupled = tuple(coupled)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {task: tower(x) for task, tower in self.towers.items()}

    def _owner(self, name: str) -> str | None:
        return name.split(".")[1]

    def coupling_penalty(self, params: Mapping[str, Tensor]) -> Tensor:
        """``Ω = Σ_{a<b} Σ_n ‖params[towers.a.n] − params[towers.b.n]‖²``, a 0-dim tensor.

        Args:
            params: a dict with (at least) the coupled parameters, named as in
                ``named_parameters()``, e.g. the params of ``fm.functional(model)``.
        """
        missing = [
            f"towers.{t}.{n}"
            for t in self.task_names
            for n in self.coupled
            if f"towers.{t}.{n}" not in params
        ]
        if missing:
            raise ValueError(f"`params` lacks coupled parameters {missing[:5]}.")
        total = params[f"towers.{self.task_names[0]}.{self.coupled[0]}"].new_zeros(())
        for name in self.coupled:
            values = [params[f"towers.{t}.{name}"] for t in self.task_names]
            for a, first in enumerate(values):
                for second in values[a + 1 :]:
                    total = total + (first - second).square().sum()
        return total


def soft_sharing_mlp(
    in_features: int,
    hidden: Sequence[int],
    tasks: Sequence[Task],
    dropout: float = 0.0,
) -> SoftSharing:
    """A :class:`SoftSharing` of identical per-task MLPs ``Linear-ReLU(-Dropout)`` over
    ``hidden`` and an output layer; the hidden layers are coupled, the output layers not."""
    check_positive(in_features, "in_features")
    tasks = check_tasks(tasks)
    if len(hidden) == 0:
        raise ValueError("`hidden` must be non-empty: without hidden layers nothing is coupled.")
    towers, coupled = {}, []
    for task in tasks:
        body = mlp(in_features, hidden, dropout=dropout)
        coupled = [name for name, _ in nn.Sequential(*body).named_parameters()]
        head = output_head(hidden[-1], task)
        towers[task.name] = nn.Sequential(*body, *head)
    return SoftSharing(towers, coupled)
