"""``clip_by_global_norm``: rescale the whole update tree when its L2 norm is too large."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl.optim import _leafwise
from funcmtl.optim._base import GradientTransformation, PyTree, stateless
from funcmtl.optim._checks import check_hyperparameter, flatten_updates


def global_norm(updates: PyTree) -> Tensor:
    """``‖u‖ = √(Σ_leaves ‖u_leaf‖²)`` as a 0-dim tensor (0 for a tree without leaves)."""
    us = tree.leaves(updates)
    if not us:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(_leafwise.norm(us)))


def clip_by_global_norm(max_norm: float | Tensor) -> GradientTransformation:
    """Scale all updates by ``min(1, max_norm / (‖u‖ + 1e-6))``, ``‖u‖`` the global L2 norm.

    This is the rule of ``torch.nn.utils.clip_grad_norm_``. The norm is taken over the whole
    tree this transform is given: under ``vmap`` over an ensemble that is each member's own
    tree, so every member is clipped on its own norm; inside :func:`partition` it is that
    group's norm.

    Args:
        max_norm: the largest allowed global norm, a positive number or a 0-dim tensor.

    Returns:
        A stateless :class:`GradientTransformation`.

    Example:
        >>> opt = fm.optim.chain(fm.optim.clip_by_global_norm(1.0), fm.optim.sgd(0.1))

    References:
        Pascanu, Mikolov & Bengio, `On the difficulty of training recurrent neural networks
        <https://arxiv.org/abs/1211.5063>`_, 2013.
    """
    check_hyperparameter("max_norm", max_norm, low=0, low_open=True)

    def clip(updates: PyTree, params: PyTree | None) -> PyTree:
        del params
        gs, rebuild, _ = flatten_updates(updates, "clip_by_global_norm")
        if not gs:
            return updates
        factor = torch.clamp(max_norm / (global_norm(updates) + 1e-6), max=1.0)
        return rebuild(_leafwise.mul(gs, factor))

    return stateless(clip)
