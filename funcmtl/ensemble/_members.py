"""Ensemble members as one stacked pytree: every leaf gets a leading member axis ``K``.

A stacked ensemble is just a pytree, so the whole library applies to it through ``vmap``.
These helpers create one (from a module definition and a key), pick members out of it, and
hand a member back as an ordinary ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from funcmtl import random, train, tree
from funcmtl._functional import init as init_model
from funcmtl._functional import load_into

PyTree = Any
Params = dict[str, torch.Tensor]


def init_members(
    module: nn.Module,
    key: torch.Tensor,
    members: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Params, Params]:
    """``members`` independently initialised copies of ``module``, stacked.

    Member ``k`` is exactly ``fm.init(module, fm.random.split(key, members)[k])``: each gets
    its own key, so a member can be re-created alone.

    Returns:
        ``(params, buffers)`` whose leaves have shape ``(members, *leaf_shape)``.
    """
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"`members` must be a positive integer; got {members!r}.")
    states = [
        init_model(module, k, device=device, dtype=dtype)
        for k in random.split(key, members)
    ]
    return tree.stack([p for p, _ in states]), tree.stack([b for _, b in states])


def num_members(stacked: PyTree) -> int:
    """The size ``K`` of the leading member axis shared by every leaf."""
    sizes = {x.shape[0] if x.dim() else None for x in tree.leaves(stacked)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "a stacked ensemble must have one leading member axis on every leaf; "
            f"found leading sizes {sorted(map(str, sizes))}."
        )
    return int(sizes.pop())


def member(stacked: PyTree, index: int) -> PyTree:
    """Member ``index`` of a stacked pytree (leaves without the member axis).

    A tree without leaves (the buffers of a model that has none) is returned as it is.
    """
    if not tree.leaves(stacked):
        return stacked
    count = num_members(stacked)
    if not -count <= index < count:
        raise ValueError(f"`index` must be in [-{count}, {count}); got {index}.")
    return tree.map(lambda x: x[index], stacked)


def member_module(
    module: nn.Module, params: Params, buffers: Params | None, index: int
) -> nn.Module:
    """Member ``index`` as an ordinary module (a deep copy of the definition ``module``).

    ``member_module(net, params, buffers, 3).state_dict()`` is a normal PyTorch checkpoint.
    """
    return load_into(
        module, member(params, index), None if buffers is None else member(buffers, index)
    )


def concat_members(stacked: Sequence[PyTree]) -> PyTree:
    """Join stacked ensembles along the member axis (e.g. groups trained one after another)."""
    if not stacked:
        raise ValueError("`stacked` must hold at least one ensemble; got an empty sequence.")
    tree.check_same_structure(list(stacked), what="ensembles to concatenate")
    return tree.map(lambda *xs: torch.cat(xs), *stacked)


def init_states(
    params: Params,
    buffers: Params,
    optimizer: train.Optimizer,
    hparams: dict[str, torch.Tensor] | None = None,
) -> train.TrainState:
    """Stacked train states for stacked ``params``/``buffers`` (every leaf ``(K, ...)``).

    Args:
        optimizer: a transform, or a factory ``hparams -> transform``.
        hparams: per-member hyperparameters, each a tensor of shape ``(K,)`` — a sweep, e.g.
            ``{"learning_rate": torch.tensor([1e-3, 3e-3, 1e-2, 3e-2])}``.
    """
    members = num_members(params)
    hparams = {name: torch.as_tensor(value) for name, value in (hparams or {}).items()}
    for name, value in hparams.items():
        if value.shape != (members,):
            raise ValueError(
                f"`hparams['{name}']` must have one value per member, shape ({members},); "
                f"got {tuple(value.shape)}."
            )
    return torch.func.vmap(
        lambda p, b, h: train.init_state(p, b, optimizer, h)
    )(params, buffers, hparams)
