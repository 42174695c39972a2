"""A learning-rate sweep trained as one vectorized batch of models.

Eight copies of one MLP, from the same initial weights, each with its own Adam learning rate
from ``torch.logspace(-4, -1, 8)``. The learning rate lives in the stacked train state
(``hparams``), and the optimizer is a *factory* ``hparams -> transform``: under ``vmap`` each
member builds its Adam from its own rate, so the whole sweep is one ``fit`` call, one
forward/backward/update per minibatch for all eight runs.

    python examples/lr_sweep.py --epochs 20
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import tyro
from torch import nn

import funcmtl as fm


@dataclasses.dataclass
class Config:
    """Sweep Adam's learning rate over a log grid, all runs trained in one vmap."""

    seed: int = 0
    """Seed of every random choice: data, the shared init, shuffling."""
    examples: int = 3000
    """Number of generated examples (split 70/15/15 into train/validation/test)."""
    noise: float = 0.1
    """Standard deviation of the Gaussian noise added to the spiral points."""
    hidden: int = 64
    """Width of the two hidden layers."""
    lowest: float = -4.0
    """log10 of the smallest learning rate."""
    highest: float = -1.0
    """log10 of the largest learning rate."""
    runs: int = 8
    """Number of learning rates, log-spaced from 10^lowest to 10^highest."""
    batch_size: int = 64
    epochs: int = 20


def main(config: Config) -> dict[float, dict[str, float]]:
    k_data, k_split, k_init, k_train = fm.random.split(fm.random.key(config.seed), 4)
    dataset = fm.data.spirals(k_data, config.examples, noise=config.noise)
    train, val, _ = fm.data.random_split(dataset, (0.7, 0.15, 0.15), key=k_split)

    net = nn.Sequential(
        nn.Linear(2, config.hidden), nn.ReLU(),
        nn.Linear(config.hidden, config.hidden), nn.ReLU(),
        nn.Linear(config.hidden, 3),
    )
    apply, _, _ = fm.functional(net)
    # One initialisation, repeated: the runs differ in their learning rate only.
    params, buffers = fm.init(net, k_init)
    params = fm.tree.stack([params] * config.runs)
    buffers = fm.tree.stack([buffers] * config.runs)

    lrs = torch.logspace(config.lowest, config.highest, config.runs)

    def factory(hp: dict[str, torch.Tensor]) -> fm.optim.GradientTransformation:
        # Called inside vmap: hp["learning_rate"] is this run's own 0-dim rate.
        return fm.optim.adam(hp["learning_rate"])

    states = fm.ensemble.init_states(params, buffers, factory, hparams={"learning_rate": lrs})
    step = fm.ensemble.make_step(
        fm.train.supervised_loss(apply, fm.losses.cross_entropy), factory
    )

    def per_run_scores(states: fm.train.TrainState, data) -> dict[str, torch.Tensor]:
        logits = fm.ensemble.predict(apply, states.params, states.buffers, data[0])
        return {
            "loss": fm.ensemble.member_scores(fm.losses.cross_entropy, logits, data[1]),
            "accuracy": fm.ensemble.member_scores(fm.metrics.accuracy, logits, data[1]),
        }

    def validate(states: fm.train.TrainState) -> dict[str, float]:
        losses = per_run_scores(states, val)["loss"]
        return {f"val_loss/{i}": float(loss) for i, loss in enumerate(losses)}

    start = time.perf_counter()
    result = fm.train.fit(
        step,
        states,
        train,
        key=k_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        evaluate_fn=validate,
        members=config.runs,
    )
    print(
        f"{config.runs} learning rates x {config.epochs} epochs trained as one vmapped batch "
        f"in {time.perf_counter() - start:.1f} s"
    )

    final = result.state
    train_scores = per_run_scores(final, train)
    val_scores = per_run_scores(final, val)
    print(
        f"\n{'learning rate':>14}{'train loss':>12}{'val loss':>10}{'val acc':>9}"
        f"{'best val loss':>15}{'at epoch':>10}"
    )
    table = {}
    for i, lr in enumerate(lrs.tolist()):
        curve = [row[f"val_loss/{i}"] for row in result.history]
        finite = [(loss, epoch) for epoch, loss in enumerate(curve) if math.isfinite(loss)]
        best_loss, best_epoch = min(finite) if finite else (math.nan, -1)
        table[lr] = {
            "train_loss": float(train_scores["loss"][i]),
            "val_loss": float(val_scores["loss"][i]),
            "val_accuracy": float(val_scores["accuracy"][i]),
            "best_val_loss": best_loss,
            "best_epoch": best_epoch,
        }
        row = table[lr]
        print(
            f"{lr:>14.2e}{row['train_loss']:>12.4f}{row['val_loss']:>10.4f}"
            f"{row['val_accuracy']:>9.3f}{best_loss:>15.4f}{best_epoch:>10d}"
        )
    finite_runs = [lr for lr in table if math.isfinite(table[lr]["val_loss"])]
    best_lr = min(finite_runs, key=lambda lr: table[lr]["val_loss"])
    print(
        f"\nbest learning rate by final validation loss: {best_lr:.2e} "
        f"(val loss {table[best_lr]['val_loss']:.4f}, "
        f"val accuracy {table[best_lr]['val_accuracy']:.3f})"
    )
    return table


if __name__ == "__main__":
    main(tyro.cli(Config))
