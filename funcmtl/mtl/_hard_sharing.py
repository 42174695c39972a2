"""Hard parameter sharing: one shared trunk, one head per task.

The classic multi-task network (Caruana, 1997): every task reads the same representation
``z = trunk(x)`` and adds its own head, ``y_t = head_t(z)``. The trunk's parameters are the
shared ones; each head's parameters belong to its task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from funcmtl.mtl._architectures import (
    SplitMultiTaskModel,
    TaskHeads,
    check_positive,
    mlp,
    module_dict,
    output_head,
)
from funcmtl.mtl._tasks import Task, check_tasks

__all__ = ["HardSharing", "RepresentationHead", "hard_sharing_mlp"]


class RepresentationHead(nn.Module):
    """``(z, x) -> net(z)``: a head that reads only the shared representation.

    Gives a plain ``z -> output`` module the ``head(z, x)`` call of :class:`TaskHeads`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        del x
        return self.net(z)


class HardSharing(SplitMultiTaskModel):
    """A shared trunk and per-task heads: ``forward(x) = {t: heads[t](trunk(x))}``.

    ``self.shared`` is the trunk; ``self.tasks.heads[t]`` wraps head ``t`` in a
    :class:`RepresentationHead`, so parameters are named ``shared.<trunk param>`` and
    ``tasks.heads.<task>.net.<head param>``.

    Args:
        trunk: ``x -> z``, shared by all tasks.
        heads: ``task name -> (z -> output)``; each output has its task's shape
            (:attr:`Task.output_shape`: ``(N,)`` for one regression target or binary label,
            so end such a head with ``squeeze(-1)``, as :func:`output_head` does).

    Example:
        >>> tasks = [fm.mtl.Task("digit", "classification", 10), fm.mtl.Task("age", "regression")]
        >>> trunk = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        >>> age_head = fm.mtl.output_head(32, tasks[1])  # Linear(32, 1), squeezed to (N,)
        >>> model = fm.mtl.HardSharing(trunk, {"digit": nn.Linear(32, 10), "age": age_head})
        >>> model(torch.randn(4, 8))["age"].shape
        torch.Size([4])
        >>> params, buffers = fm.init(model, fm.random.key(0))
        >>> opt = fm.optim.adam(1e-3)
        >>> state = fm.mtl.init_state(params, buffers, tasks, opt, "pcgrad")
        >>> step = fm.mtl.make_step(fm.mtl.split_module(model), tasks, opt, "pcgrad")
        >>> targets = {"digit": torch.tensor([0, 3, 9, 1]), "age": torch.randn(4)}
        >>> batch = (torch.randn(4, 8), targets)
        >>> state, metrics = step(state, batch, fm.random.key(1))
        >>> metrics["losses"].shape
        torch.Size([2])

    References:
        Caruana, `Multitask Learning <https://doi.org/10.1023/A:1007379606734>`_, 1997.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        if not isinstance(trunk, nn.Module):
            raise ValueError(f"`trunk` must be an nn.Module; got {type(trunk).__name__}.")
        heads = module_dict(heads, "heads")
        super().__init__(trunk, TaskHeads({t: RepresentationHead(h) for t, h in heads.items()}))


def hard_sharing_mlp(
    in_features: int,
    hidden: Sequence[int],
    tasks: Sequence[Task],
    head_hidden: Sequence[int] = (),
    dropout: float = 0.0,
) -> HardSharing:
    """A :class:`HardSharing` MLP: trunk ``Linear-ReLU(-Dropout)`` over ``hidden``, then per
    task an MLP over ``head_hidden`` and ``Linear(-, output_size)``.

    Outputs have each task's shape (``Task.output_shape``). With ``hidden=()`` the trunk is
    the identity and the heads read ``x`` itself.
    """
    check_positive(in_features, "in_features")
    tasks = check_tasks(tasks)
    trunk_layers = mlp(in_features, hidden, dropout=dropout)
    trunk = nn.Sequential(*trunk_layers) if trunk_layers else nn.Identity()
    width = hidden[-1] if hidden else in_features
    heads = {t.name: output_head(width, t, head_hidden, dropout=dropout) for t in tasks}
    return HardSharing(trunk, heads)
