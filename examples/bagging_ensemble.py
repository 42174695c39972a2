"""Bagging a vectorized ensemble: every member trains on its own bootstrap resample.

``fm.data.bootstrap`` draws, for each member, ``n`` training indices with replacement;
``fm.train.fit(..., member_indices=idx)`` then hands every step a batch with a leading
member axis ``(K, batch, ...)``, and a step built with ``per_member_batch=True`` maps each
member over its own slice. The same ensemble (same initialisations, same keys) trained on the
shared data is the baseline: bagging makes the members disagree more, which is what an
average of models profits from, but each member also sees only ~63% of the distinct
examples and is weaker alone. Expect the members to disagree several times more often and
the ensemble to recover most or all of its members' loss; the gain is clearest once the
members overfit (the "after all epochs" rows), as bagging is a variance reduction.

References: Breiman, `Bagging Predictors <https://doi.org/10.1007/BF00058655>`_, 1996.

    python examples/bagging_ensemble.py --train-examples 300 --members 8
"""

from __future__ import annotations

import dataclasses
import time

import torch
import tyro
from torch import nn

import funcmtl as fm


@dataclasses.dataclass
class Config:
    """Compare a bagged vectorized ensemble with the same ensemble on shared data."""

    seed: int = 0
    """Seed of every random choice: data, init, resamples, shuffling."""
    train_examples: int = 300
    """Training set size (small, so that single members overfit)."""
    test_examples: int = 4000
    """Size of each of the validation and test sets."""
    classes: int = 5
    """Number of Gaussian blobs, one per class, their centres on a circle."""
    spread: float = 0.5
    """Standard deviation of each blob (centres are 1 apart on neighbours): class overlap."""
    members: int = 8
    """Ensemble size K."""
    hidden: int = 128
    """Width of the two hidden layers."""
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 60


def main(config: Config) -> dict[str, dict[str, float]]:
    k_train_data, k_val_data, k_test_data, k_init, k_boot, k_fit = fm.random.split(
        fm.random.key(config.seed), 6
    )
    train = fm.data.blobs(k_train_data, config.train_examples, config.classes, config.spread)
    val = fm.data.blobs(k_val_data, config.test_examples, config.classes, config.spread)
    test = fm.data.blobs(k_test_data, config.test_examples, config.classes, config.spread)

    net = nn.Sequential(
        nn.Linear(2, config.hidden), nn.ReLU(),
        nn.Linear(config.hidden, config.hidden), nn.ReLU(),
        nn.Linear(config.hidden, config.classes),
    )
    apply, _, _ = fm.functional(net)
    params, buffers = fm.ensemble.init_members(net, k_init, config.members)
    optimizer = fm.optim.adam(config.learning_rate)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    metrics = {"accuracy": fm.metrics.accuracy, "nll": fm.metrics.nll, "ece": fm.metrics.ece}

    # Row k: the n indices member k trains on (drawn with replacement).
    idx = fm.data.bootstrap(k_boot, config.members, config.train_examples)
    distinct = sum(len(torch.unique(row)) for row in idx) / config.members
    print(
        f"{config.members} members, {config.train_examples} training examples; "
        f"a bootstrap resample holds {distinct:.0f} distinct ones on average "
        f"({distinct / config.train_examples:.0%}, expected 1 - 1/e = 63%)"
    )

    def validate(states: fm.train.TrainState) -> dict[str, float]:
        scores = fm.ensemble.evaluate(apply, states.params, states.buffers, val, metrics)
        return {f"val_{name}": value for name, value in scores.items()}

    results = {}
    for name, member_indices in (("shared data", None), ("bagging", idx)):
        step = fm.ensemble.make_step(
            loss_fn, optimizer, per_member_batch=member_indices is not None
        )
        start = time.perf_counter()
        # Same initialisation and keys for both: only the data each member sees differs.
        fitted = fm.train.fit(
            step,
            fm.ensemble.init_states(params, buffers, optimizer),
            train,
            key=k_fit,
            batch_size=config.batch_size,
            epochs=config.epochs,
            evaluate_fn=validate,
            monitor="val_ensemble_nll",
            members=config.members,
            member_indices=member_indices,
        )
        seconds = time.perf_counter() - start
        best = fitted.best_state  # the epoch with the best validation NLL of the ensemble
        scores = fm.ensemble.evaluate(apply, best.params, best.buffers, test, metrics)
        logits = fm.ensemble.predict(apply, best.params, best.buffers, test[0])
        pairwise = fm.ensemble.pairwise_disagreement(logits)
        k = config.members
        scores["pairwise_disagreement"] = float(pairwise.sum() / (k * (k - 1)))
        scores["mutual_information"] = float(fm.ensemble.mutual_information(logits).mean())
        best_epoch = min(fitted.history, key=lambda row: row["val_ensemble_nll"])["epoch"]
        scores["best_epoch"] = best_epoch
        last = fitted.state  # without early stopping the members overfit the small train set
        last_scores = fm.ensemble.evaluate(apply, last.params, last.buffers, test, metrics)
        scores.update({f"last_{metric}": value for metric, value in last_scores.items()})
        results[name] = scores
        print(f"  {name}: {len(fitted.history)} epochs in {seconds:.1f} s")

    print(f"\ntest set ({config.test_examples} points){'':<10}{'shared data':>12}{'bagging':>12}")
    print("  (at the epoch of best validation NLL, unless marked)")
    rows = [
        ("ensemble accuracy", "ensemble_accuracy", ".4f"),
        ("mean member accuracy", "member_accuracy", ".4f"),
        ("ensemble NLL", "ensemble_nll", ".4f"),
        ("mean member NLL", "member_nll", ".4f"),
        ("ensemble ECE", "ensemble_ece", ".4f"),
        ("mean member ECE", "member_ece", ".4f"),
        ("pairwise disagreement", "pairwise_disagreement", ".4f"),
        ("mutual information", "mutual_information", ".4f"),
        ("best epoch (val NLL)", "best_epoch", ".0f"),
        ("after all epochs: ensemble acc.", "last_ensemble_accuracy", ".4f"),
        ("after all epochs: member acc.", "last_member_accuracy", ".4f"),
        ("after all epochs: ensemble NLL", "last_ensemble_nll", ".4f"),
        ("after all epochs: member NLL", "last_member_nll", ".4f"),
    ]
    for label, key, spec in rows:
        shared, bagged = results["shared data"][key], results["bagging"][key]
        print(f"  {label:<34}{shared:>12{spec}}{bagged:>12{spec}}")
    return results


if __name__ == "__main__":
    main(tyro.cli(Config))
