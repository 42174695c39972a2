"""Multi-task learning with PCGrad on one page: a plain loop over pure functions.

A hard-sharing MLP (a shared trunk, one head per task) learns three tasks at once on pairs of
handwritten digits: the left digit, the right digit (10 classes each) and their sum
(regression). The update is PCGrad's: every task gradient on the shared trunk is projected
away from the ones it conflicts with before they are summed. Every random choice comes from
an explicit key. At the end it prints the test scores and how often two tasks' gradients
pointed against each other (cosine < 0) during training.

    python examples/mtl_pcgrad.py                              # ~10 s on 2 CPU cores
    FUNCMTL_EXAMPLE_QUICK=1 python examples/mtl_pcgrad.py      # a few seconds (the tests)
"""

from __future__ import annotations

import os
import time

import torch

import funcmtl as fm

QUICK = os.environ.get("FUNCMTL_EXAMPLE_QUICK") == "1"
EPOCHS = 2 if QUICK else 8
NUM_PAIRS = (1000, 100, 1000) if QUICK else (8000, 1000, 1000)  # train, val, test
BATCH_SIZE = 128

train, _, test = fm.datasets.load_splits("multidigits", seed=0, num_pairs=NUM_PAIRS)
tasks = train.tasks  # left, right: classification; sum: regression (scaled to [0, 1])
k_init, k_data, k_step = fm.random.split(fm.random.key(0), 3)

# module.shared is the trunk 128 -> 256 -> 128, module.tasks.heads a ModuleDict of heads.
module = fm.mtl.hard_sharing_mlp(train.num_features, (256, 128), tasks)
params, buffers = fm.init(module, k_init)
optimizer = fm.optim.adam(1e-3)
pcgrad = fm.aggregators.get("pcgrad")
# split_module cuts the model at the trunk's output: one Jacobian row per task on the trunk.
step = fm.mtl.make_step(fm.mtl.split_module(module), tasks, optimizer, pcgrad)
state = fm.mtl.init_state(params, buffers, tasks, optimizer, pcgrad)

pairs = torch.triu_indices(len(tasks), len(tasks), offset=1)  # (2, 3): each task pair once
conflicts, steps = torch.zeros(pairs.shape[1]), 0
start = time.perf_counter()
for epoch in range(EPOCHS):
    for batch in fm.data.batches(train.data, BATCH_SIZE, key=k_data, epoch=epoch):
        # The step key drives PCGrad's random projection order.
        state, metrics = step(state, batch, fm.random.fold_in(k_step, steps))
        conflicts += metrics["cosine"][pairs[0], pairs[1]] < 0
        steps += 1
    print(f"epoch {epoch + 1}  losses (left, right, sum) {metrics['losses'].numpy().round(4)}")
print(f"{steps} PCGrad steps in {time.perf_counter() - start:.1f} s\n")

apply = fm.Apply(module)
outputs, _ = apply(state.params, state.buffers, test.inputs)  # eval mode: {task: (N, ...)}
scores = fm.mtl.task_metrics(tasks, outputs, test.targets)
print(f"test ({len(test)} pairs)          value   reference")
print(f"  left  accuracy       {scores['left/accuracy']:8.4f}   chance 0.1")
print(f"  right accuracy       {scores['right/accuracy']:8.4f}   chance 0.1")
baseline = test.targets["sum"].var(unbiased=False)  # MSE of always predicting the mean
print(f"  sum   MSE (sum / 18) {scores['sum/mse']:8.4f}   predict-the-mean {baseline:.4f}")
print("\nconflicting gradient pairs (cosine < 0 on the shared trunk), share of steps")
for (i, j), count in zip(pairs.T.tolist(), conflicts.tolist(), strict=True):
    print(f"  {tasks[i].name:>5} vs {tasks[j].name:<5}  {count / steps:6.1%}")
print(f"  all pairs       {conflicts.sum() / (steps * pairs.shape[1]):6.1%}")
