"""Optax-style gradient transformations on pytrees of tensors.

A transform is ``GradientTransformation(init, update)``: ``state = init(params)``,
``updates, state = update(grads, state, params)``, then
``params = apply_updates(params, updates)``. Everything is pure and runs under
``torch.func.vmap`` (a batch of models, each with its own state, or a sweep over tensor
hyperparameters) and ``torch.func.grad``.

Example:
    >>> import funcmtl as fm
    >>> params, grads = {"w": torch.ones(3)}, {"w": torch.tensor([1.0, -2.0, 0.5])}
    >>> opt = fm.optim.chain(fm.optim.clip_by_global_norm(1.0), fm.optim.sgd(1.0))
    >>> state = opt.init(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> fm.optim.apply_updates(params, updates)  # a step of norm 1 against the gradient
    {'w': tensor([0.5636, 1.8729, 0.7818])}
"""

from funcmtl.optim._adam import ScaleByAdamState, adam, adamw, scale_by_adam
from funcmtl.optim._base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    apply_updates,
    identity,
    set_to_zero,
    stateless,
    update_params,
)
from funcmtl.optim._chain import chain
from funcmtl.optim._clipping import clip_by_global_norm
from funcmtl.optim._momentum import TraceState, trace
from funcmtl.optim._partition import PartitionState, leaf_names, partition
from funcmtl.optim._regularizers import add_decayed_weights, add_l1
from funcmtl.optim._rmsprop import ScaleByRmsState, rmsprop, scale_by_rms
from funcmtl.optim._scale import (
    ScaleByScheduleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from funcmtl.optim._schedules import (
    constant_schedule,
    cosine_decay_schedule,
    linear_schedule,
    linear_warmup_schedule,
    step_decay_schedule,
    warmup_cosine_decay_schedule,
)
from funcmtl.optim._sgd import sgd

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "PartitionState",
    "ScalarOrSchedule",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "Schedule",
    "TraceState",
    "adam",
    "adamw",
    "add_decayed_weights",
    "add_l1",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "identity",
    "leaf_names",
    "linear_schedule",
    "linear_warmup_schedule",
    "partition",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_schedule",
    "set_to_zero",
    "sgd",
    "stateless",
    "step_decay_schedule",
    "trace",
    "update_params",
    "warmup_cosine_decay_schedule",
]
