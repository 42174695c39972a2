"""A deep ensemble trained as one vectorized model, and the uncertainty it reveals.

Eight MLPs with dropout, each from its own initialisation key, are stacked into one pytree
and trained together: ``fm.ensemble.make_step`` is the single-model step under
``torch.func.vmap``, so one pass computes every member's forward, backward and Adam update
on a shared minibatch, with per-member dropout keys. At the end the ensemble (the mean of the
members' probabilities) is scored against its average member, and its uncertainty is
split into aleatoric (expected entropy) and epistemic (mutual information) parts, on test
points and on two kinds of out-of-distribution inputs, where the members agree less.

References: Lakshminarayanan et al., `Simple and Scalable Predictive Uncertainty Estimation
using Deep Ensembles <https://arxiv.org/abs/1612.01474>`_, 2017.

    python examples/deep_ensemble.py --members 8 --epochs 40
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
    """Train a vectorized deep ensemble on a generated spiral and measure its uncertainty."""

    seed: int = 0
    """Seed of every random choice: data, init, shuffling, dropout, OOD points."""
    examples: int = 3000
    """Number of generated examples (split 70/15/15 into train/validation/test)."""
    noise: float = 0.1
    """Standard deviation of the Gaussian noise added to the spiral points (class overlap)."""
    members: int = 8
    """Ensemble size K."""
    hidden: int = 64
    """Width of the two hidden layers."""
    dropout: float = 0.1
    """Dropout rate after each hidden layer."""
    learning_rate: float = 3e-3
    batch_size: int = 64
    epochs: int = 40
    patience: int = 8
    """Stop after this many epochs without a better validation NLL of the ensemble."""
    ood_scale: float = 5.0
    """Far-away inputs: test inputs multiplied by this factor."""


def ring(key: torch.Tensor, n: int, low: float, high: float) -> torch.Tensor:
    """``n`` points uniform in area on the ring ``low <= |x| <= high``: ``(n, 2)``."""
    k_radius, k_angle = fm.random.split(key)
    radius = torch.sqrt(fm.random.uniform(k_radius, (n,), low=low**2, high=high**2))
    angle = fm.random.uniform(k_angle, (n,), low=0.0, high=2 * math.pi)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


def main(config: Config) -> dict[str, float]:
    k_data, k_split, k_init, k_train, k_ood = fm.random.split(fm.random.key(config.seed), 5)
    dataset = fm.data.spirals(k_data, config.examples, noise=config.noise)
    train, val, test = fm.data.random_split(dataset, (0.7, 0.15, 0.15), key=k_split)

    net = nn.Sequential(
        nn.Linear(2, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
        nn.Linear(config.hidden, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
        nn.Linear(config.hidden, 3),
    )
    apply, _, _ = fm.functional(net)
    # Member k is exactly fm.init(net, split(k_init, K)[k]): every leaf gets a leading K axis.
    params, buffers = fm.ensemble.init_members(net, k_init, config.members)

    optimizer = fm.optim.adam(config.learning_rate)
    step = fm.ensemble.make_step(
        fm.train.supervised_loss(apply, fm.losses.cross_entropy), optimizer
    )
    states = fm.ensemble.init_states(params, buffers, optimizer)
    metrics = {"accuracy": fm.metrics.accuracy, "nll": fm.metrics.nll, "ece": fm.metrics.ece}

    def validate(states: fm.train.TrainState) -> dict[str, float]:
        scores = fm.ensemble.evaluate(apply, states.params, states.buffers, val, metrics)
        return {f"val_{name}": value for name, value in scores.items()}

    start = time.perf_counter()
    result = fm.train.fit(
        step,
        states,
        train,
        key=k_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        evaluate_fn=validate,
        monitor="val_ensemble_nll",
        mode="min",
        patience=config.patience,
        members=config.members,
    )
    best_epoch = min(result.history, key=lambda row: row["val_ensemble_nll"])["epoch"]
    print(
        f"trained {config.members} members for {len(result.history)} epochs in "
        f"{time.perf_counter() - start:.1f} s (best validation NLL at epoch {int(best_epoch)})"
    )

    best = result.best_state
    scores = fm.ensemble.evaluate(apply, best.params, best.buffers, test, metrics)
    print(f"\ntest set ({len(test[1])} points)   ensemble   mean member")
    for name, label in (("accuracy", "accuracy"), ("nll", "NLL"), ("ece", "ECE")):
        print(f"  {label:<24}{scores[f'ensemble_{name}']:>9.4f}{scores[f'member_{name}']:>14.4f}")

    x_test = test[0]
    ood = {
        "test (in-distribution)": x_test,
        f"test inputs x{config.ood_scale:g} (OOD)": config.ood_scale * x_test,
        # Uniform on the ring 3 <= |x| <= 5, far outside the data (|x| <= ~1).
        "uniform ring r in [3, 5]": ring(k_ood, len(x_test), 3.0, 5.0),
    }
    print(
        f"\nuncertainty (nats, mean){'':<8}{'total':>8}{'aleatoric':>11}{'mutual info':>13}"
        f"{'disagree':>10}"
    )
    for name, x in ood.items():
        logits = fm.ensemble.predict(apply, best.params, best.buffers, x)  # (K, N, 3)
        total = fm.ensemble.predictive_entropy(logits).mean()
        aleatoric = fm.ensemble.expected_entropy(logits).mean()
        epistemic = fm.ensemble.mutual_information(logits).mean()
        disagreement = fm.ensemble.disagreement(logits).mean()
        scores[f"mutual_information/{name}"] = float(epistemic)
        print(
            f"  {name:<30}{total:>8.4f}{aleatoric:>11.4f}{epistemic:>13.4f}"
            f"{disagreement:>10.3f}"
        )
    print(f"  (maximum entropy log 3 = {math.log(3):.4f})")
    return scores


if __name__ == "__main__":
    main(tyro.cli(Config))
