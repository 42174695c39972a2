"""``funcmtl toy``: methods' trajectories on the two-objective toy problem of CAGrad et al."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch

from funcmtl import aggregators, datasets, experiment, random
from funcmtl.experiment import _config, _io

from ._common import parse_method


@dataclasses.dataclass(frozen=True)
class Toy:
    """Optimise the CAGrad / Nash-MTL / FAMO toy problem (two losses of a point in R²) from
    the papers' starting points with each method, and print where each run ends.

    Example: funcmtl toy --methods mean pcgrad mgda upgrad --steps 3000 --out toy.json
    """

    methods: tuple[str, ...] = ("mean", "pcgrad", "mgda", "upgrad")
    """Aggregators to run ('name' or 'name:key=value,...')."""
    starts: Literal["cagrad", "nash_mtl", "famo"] = "cagrad"
    """Whose starting points (and loss scale) to use."""
    steps: int = 2000
    """Adam steps per run (the papers run 35k-100k at lr 1e-3)."""
    lr: float = 1e-2
    """Adam learning rate."""
    seed: int = 0
    """Key of the randomised methods (PCGrad's order, GradDrop's masks)."""
    out: Path | None = None
    """Also write every trajectory and its losses here as JSON."""


def run(config: Toy) -> int:
    if config.steps < 1 or not config.lr > 0:
        raise ValueError(f"--steps and --lr must be positive; got {config.steps}, {config.lr}.")
    if not config.methods:
        raise ValueError("--methods needs at least one method (e.g. --methods mean pcgrad); "
                         "got none.")
    if config.out is not None and config.out.is_dir():
        raise ValueError(f"--out {config.out} is a directory; toy writes one JSON file: pass "
                         f"a file path such as {config.out / 'toy.json'}.")
    if config.out is not None and not config.out.parent.is_dir():
        raise ValueError(f"--out {config.out}: directory {config.out.parent} does not exist; "
                         "create it first.")
    results, rows = {}, []
    scale = datasets.TOY_SCALES[config.starts]
    for text in config.methods:
        name, options = parse_method(text)
        aggregator = aggregators.get(
            name, **aggregators.parse(name, _config.option_texts(options, text)))
        for i, start in enumerate(datasets.TOY_STARTS[config.starts]):
            path = datasets.toy_trajectory(
                aggregator, torch.tensor(start, dtype=torch.float64), steps=config.steps,
                lr=config.lr, key=random.fold_in(random.key(config.seed), i), scale=scale,
            )
            end, losses = path["trajectory"][-1], path["losses"][-1]
            rows.append([text, f"({start[0]:g}, {start[1]:g})",
                         f"({float(end[0]):.3f}, {float(end[1]):.3f})",
                         f"{float(losses[0]):.4f}", f"{float(losses[1]):.4f}"])
            results.setdefault(text, []).append(
                {"start": list(start), "trajectory": path["trajectory"].tolist(),
                 "losses": path["losses"].tolist()}
            )
    print(f"toy problem ({config.starts} starts), {config.steps} Adam steps at lr {config.lr}")
    print(experiment.table(["method", "start", "end", "loss 1", "loss 2"], rows))
    if config.out is not None:
        _io.write_json(config.out, {"starts": config.starts, "steps": config.steps,
                                           "lr": config.lr, "runs": results})
        print(f"wrote {config.out}")
    return 0
