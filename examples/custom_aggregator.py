"""Write your own aggregator in twenty lines, check what it promises, and train with it.

An aggregator turns the task gradients ``J`` ``(tasks, params)`` into one update direction.
Most methods are a *weighting*: they read the Gramian ``G = J Jᵀ`` ``(tasks, tasks)``,
choose weights ``w`` ``(tasks,)`` and return ``Jᵀ w``; ``fm.aggregators.from_weighting``
builds the whole aggregator from that one function. The one written here is a
"norm-equalised mean": every task gradient is rescaled to the average gradient norm before
averaging, so a task whose loss happens to have large gradients cannot dominate the update
(rationale in one line: equal say for every task, at the mean's step size).

The script checks the promised properties on a random Jacobian, then hands the aggregator to
``fm.experiment.train``, the loop behind ``funcmtl train``, and prints its test scores next
to the built-in "mean".

    python examples/custom_aggregator.py                          # ~10 s on 2 CPU cores
    FUNCMTL_EXAMPLE_QUICK=1 python examples/custom_aggregator.py  # a few seconds (the tests)
"""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor

import funcmtl as fm

QUICK = os.environ.get("FUNCMTL_EXAMPLE_QUICK") == "1"


def norm_equalised_mean() -> fm.aggregators.Aggregator:
    r"""The mean of the task gradients, each first rescaled to the mean gradient norm.

    .. math::
        d = \frac{1}{T} \sum_{t=1}^{T} \frac{\bar n}{\lVert g_t \rVert} g_t, \qquad
        \lVert g_t \rVert = \sqrt{G_{tt}}, \quad \bar n = \frac{1}{T} \sum_t \lVert g_t \rVert.

    Every task contributes a vector of the same norm ``n̄ / T``; with equal norms it is the
    mean. Stateless and linear under positive scaling of ``J``.
    """

    def init(num_tasks: int) -> tuple[()]:
        del num_tasks
        return ()  # nothing carried between steps

    def weights(gramian: Tensor, state: tuple[()], *, key: Tensor | None = None):
        del key  # deterministic
        norms = gramian.diagonal().clamp_min(1e-24).sqrt()  # ‖g_t‖ from the diagonal
        return norms.mean() / (len(norms) * norms), state

    return fm.aggregators.from_weighting(init, weights)


# The promise, on a random Jacobian whose third task has 100x larger gradients.
aggregator = norm_equalised_mean()
scale = torch.tensor([[1.0], [2.0], [100.0]], dtype=torch.float64)
jacobian = fm.random.normal(fm.random.key(0), (3, 50), dtype=torch.float64) * scale
direction, _ = aggregator.update(jacobian, aggregator.init(3))
w, _ = aggregator.weights(jacobian @ jacobian.T, ())
contributions = (w[:, None] * jacobian).norm(dim=1)  # ‖w_t g_t‖ per task
norms = jacobian.norm(dim=1)
assert torch.allclose(contributions, torch.full((3,), norms.mean() / 3, dtype=torch.float64))
assert torch.allclose(direction, jacobian.T @ w)
equal_norms = jacobian / norms[:, None]  # all norms 1: the weights are those of the mean
assert torch.allclose(aggregator.update(equal_norms, ())[0], equal_norms.mean(0))
print(f"gradient norms {norms.numpy().round(2)} -> every task contributes "
      f"{contributions[0]:.3f} (checked)\n")

# The same experiment twice: the built-in "mean", then ours in its place.
config = fm.experiment.TrainConfig(
    data="multidigits", hidden=(256, 128), epochs=3, lr=1e-3, seed=0,
    steps=16 if QUICK else None,
)
splits = fm.experiment.Splits(
    *fm.datasets.load_splits("multidigits", seed=0,
                             num_pairs=(2000, 100, 1000) if QUICK else (8000, 1000, 1000))
)
results = {}
for name, method in (("mean", None), ("norm-equalised", norm_equalised_mean())):
    start = time.perf_counter()
    run = fm.experiment.train(config, splits=splits, aggregator=method, progress=False)
    print(f"{name}: {run.steps} steps in {time.perf_counter() - start:.1f} s")
    results[name] = fm.experiment.summarize(run.setup.tasks, run.test)

tasks = splits.tasks
rows = []
for task in tasks:
    for metric in task.metrics:
        rows.append([task.name, metric, *(f"{results[name][task.name][metric]['mean']:.4f}"
                                         for name in results)])
print("\ntest scores")
print(fm.experiment.table(["task", "metric", *results], rows))
