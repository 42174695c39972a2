"""The train state: everything a run carries from step to step, as one pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from funcmtl import optim

PyTree = Any
Params = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]
Hparams = dict[str, torch.Tensor]
LossFn = Callable[
    [Params, Params, PyTree, torch.Tensor, Hparams],
    tuple[torch.Tensor, tuple[Params, Metrics]],
]
Optimizer = optim.GradientTransformation | Callable[[Hparams], optim.GradientTransformation]
Step = Callable[[Any, PyTree, torch.Tensor], tuple[Any, Metrics]]


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, so it stacks, vmaps and checkpoints."""

    params: Params
    buffers: Params
    opt_state: PyTree
    step: torch.Tensor  # shape=(), int64: number of updates applied
    hparams: Hparams = {}  # 0-dim tensors, e.g. a per-member learning rate


def resolve_optimizer(optimizer: Optimizer, hparams: Hparams) -> optim.GradientTransformation:
    """The transform itself, or the one a factory builds from the state's hyperparameters.

    A factory ``hparams -> GradientTransformation`` lets hyperparameters live in the train
    state, so that ``vmap`` over stacked states is a sweep::

        opt = lambda hp: fm.optim.adam(hp["learning_rate"])
    """
    if isinstance(optimizer, optim.GradientTransformation):
        return optimizer
    if callable(optimizer):
        return optimizer(hparams)
    raise ValueError(
        "`optimizer` must be a GradientTransformation or a function hparams -> "
        f"GradientTransformation; got {type(optimizer).__name__}."
    )


def init_state(
    params: Params,
    buffers: Params,
    optimizer: Optimizer,
    hparams: Hparams | None = None,
) -> TrainState:
    """A fresh train state at step 0.

    Args:
        hparams: per-run hyperparameters as numbers or 0-dim tensors (stored as tensors), read
            by an optimizer factory and by the loss (``dropout_rate``).
    """
    hparams = {name: torch.as_tensor(value) for name, value in (hparams or {}).items()}
    opt_state = resolve_optimizer(optimizer, hparams).init(params)
    return TrainState(params, buffers, opt_state, torch.zeros((), dtype=torch.int64), hparams)
