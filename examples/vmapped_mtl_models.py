"""Four multi-task models, each with its own PCGrad, trained in one ``torch.func.vmap`` pass.

``fm.mtl.make_step`` is a pure function ``step(state, batch, key) -> (state, metrics)`` of one
model. Stack K states (K initialisation keys) on a leading member axis and ``vmap`` the step
over ``(state, batch, key)``: one call computes all K models' per-task gradients, K
independent PCGrad projections (each with its own random task order, from its own key) and
K Adam updates. ``fm.train.fit(..., members=K, shuffle="member")`` drives it: member k is the
run of one model keyed by ``fm.random.split(key, K)[k]`` (its dropout and PCGrad keys, its
own data order: the batches are *per member*, ``(K, batch, ...)``), the same rule
``fm.ensemble.init_members`` initialises it by. One vmapped forward then scores all K
models on the test set.

The second part shows what can and cannot differ between vmapped members: a tensor
hyperparameter such as the learning rate can, the aggregator itself cannot (see the comment
there).

    python examples/vmapped_mtl_models.py                          # ~15 s on 2 CPU cores
    FUNCMTL_EXAMPLE_QUICK=1 python examples/vmapped_mtl_models.py  # a few seconds (the tests)
"""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor

import funcmtl as fm

QUICK = os.environ.get("FUNCMTL_EXAMPLE_QUICK") == "1"
K = 4  # members
EPOCHS = 2 if QUICK else 5
NUM_PAIRS = (1000, 100, 1000) if QUICK else (8000, 1000, 1000)  # train, val, test
BATCH_SIZE = 128

train, _, test = fm.datasets.load_splits("multidigits", seed=0, num_pairs=NUM_PAIRS)
tasks = train.tasks  # left, right: classification; sum: regression (scaled to [0, 1])
k_init, k_train = fm.random.split(fm.random.key(0))
module = fm.mtl.hard_sharing_mlp(train.num_features, (256, 128), tasks)
model, apply = fm.mtl.split_module(module), fm.Apply(module)
pcgrad = fm.aggregators.get("pcgrad")


def init_members(params, buffers, optimizer, hparams: dict[str, Tensor] | None = None):
    """The K members' train states stacked on a leading member axis, from their stacked
    ``params`` and ``buffers``, with the k-th entry of every ``hparams`` tensor ``(K,)``."""
    states = []
    for k, (p, b) in enumerate(fm.tree.unstack((params, buffers))):
        own = {name: values[k] for name, values in (hparams or {}).items()}
        states.append(fm.mtl.init_state(p, b, tasks, optimizer, pcgrad, hparams=own))
    return fm.tree.stack(states)


def train_members(step, states: fm.mtl.MTLState) -> fm.mtl.MTLState:
    """Train all members together: every argument of the vmapped step has the member axis."""
    vstep = torch.func.vmap(step)  # in_dims=0 for state, batch and key alike
    return fm.train.fit(vstep, states, train.data, key=k_train, batch_size=BATCH_SIZE,
                        epochs=EPOCHS, members=K, shuffle="member").state


def score_members(states: fm.mtl.MTLState) -> dict[str, Tensor]:
    """``{"task/metric": (K,)}``: all members' test forward passes in one vmap."""

    def scores(params: dict[str, Tensor], buffers: dict[str, Tensor]) -> dict[str, Tensor]:
        outputs, _ = apply(params, buffers, test.inputs)
        return fm.mtl.task_metrics(tasks, outputs, test.targets)

    return torch.func.vmap(scores)(states.params, states.buffers)


def print_table(label: str, names: list[str], scores: dict[str, Tensor]) -> None:
    columns = {"left accuracy": "left/accuracy", "right accuracy": "right/accuracy",
               "sum MSE": "sum/mse"}
    rows = [[name, *(f"{scores[c][k]:.4f}" for c in columns.values())]
            for k, name in enumerate(names)]
    rows.append(["mean ± std",
                 *(f"{scores[c].mean():.4f} ± {scores[c].std():.4f}" for c in columns.values())])
    print(fm.experiment.table([label, *columns], rows))


# Part 1: K models that differ in initialisation, data order and PCGrad's task order.
optimizer = fm.optim.adam(1e-3)
step = fm.mtl.make_step(model, tasks, optimizer, pcgrad)
start = time.perf_counter()
params, buffers = fm.ensemble.init_members(module, k_init, K)  # member k: split(k_init, K)[k]
states = train_members(step, init_members(params, buffers, optimizer))
print(f"{K} PCGrad models, {EPOCHS} epochs, one vmap: {time.perf_counter() - start:.1f} s\n")
print_table("member", [f"{k}" for k in range(K)], score_members(states))

# Part 2: K aggregators in one vmap is not possible. vmap runs ONE program on K sets of
# tensors, and an aggregator is code: PCGrad's projections and MGDA's solver are different
# programs, so train them one after the other. What lives in the state as a tensor can
# differ per member, e.g. the learning rate, which the optimizer factory reads from
# `state.hparams` inside the vmapped step. Same initial weights here; the data order still
# differs per member.
learning_rates = torch.tensor([1e-4, 3e-4, 1e-3, 3e-3])


def adam_from_state(hparams: dict[str, Tensor]) -> fm.optim.GradientTransformation:
    return fm.optim.adam(hparams["learning_rate"])  # this member's own 0-dim rate


step = fm.mtl.make_step(model, tasks, adam_from_state, pcgrad)
one_params, one_buffers = fm.init(module, k_init)
same = fm.tree.stack([(one_params, one_buffers)] * K)
states = init_members(*same, adam_from_state, {"learning_rate": learning_rates})
start = time.perf_counter()
states = train_members(step, states)
print(f"\n{K} learning rates, PCGrad, one vmap: {time.perf_counter() - start:.1f} s\n")
print_table("lr", [f"{lr:.0e}" for lr in learning_rates.tolist()], score_members(states))
