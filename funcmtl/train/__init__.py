"""The functional training loop: a train-state pytree and a pure ``step``.

``step(state, batch, key) -> (state, metrics)`` is a pure function: no module, optimizer or
generator is mutated, so the same step function is the single-model trainer, the ensemble
trainer (``vmap(step, randomness="different")`` over stacked states and keys) and a candidate
for ``torch.compile``. :func:`fit` is the eager driver around it: the schedule, key-driven
shuffling, evaluation, (per-member) early stopping and hooks for logging and checkpoints;
``funcmtl train`` is :func:`fit` with such hooks.

Example:
    >>> net = nn.Linear(4, 3)
    >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> apply, _, _ = fm.functional(net)
    >>> params, buffers = fm.init(net, fm.random.key(0))
    >>> opt = fm.optim.adam(1e-3)
    >>> step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    >>> state = fm.train.init_state(params, buffers, opt)
    >>> state, metrics = step(state, (x, y), fm.random.key(1))
    >>> metrics
    {'loss': tensor(...)}
"""

from funcmtl.train._early_stopping import EarlyStopping
from funcmtl.train._evaluate import evaluate, predict
from funcmtl.train._fit import Callback, FitResult, FitState, fit, fit_state, schedule
from funcmtl.train._state import (
    Hparams,
    LossFn,
    Metrics,
    Optimizer,
    Params,
    PyTree,
    Step,
    TrainState,
    init_state,
    resolve_optimizer,
)
from funcmtl.train._step import loss_and_grads, make_step, supervised_loss

__all__ = [
    "Callback",
    "EarlyStopping",
    "FitResult",
    "FitState",
    "Hparams",
    "LossFn",
    "Metrics",
    "Optimizer",
    "Params",
    "PyTree",
    "Step",
    "TrainState",
    "evaluate",
    "fit",
    "fit_state",
    "init_state",
    "loss_and_grads",
    "make_step",
    "predict",
    "resolve_optimizer",
    "schedule",
    "supervised_loss",
]
