"""``funcmtl toy``: methods' trajectories on the two-objective toy problem of CAGrad et al."""

from __future__ import annotations

import dataclasses
import functools
import warnings
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

    All methods and starts run as one batch (vmap over the starts, one optimizer update for
    all methods), compiled by torch.compile for long runs: the papers' 100k steps take well
    under a minute.

    Example: funcmtl toy --methods mean mgda pcgrad cagrad:c=0.5 --steps 100000 --lr 0.001
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
    """Key of the randomised methods (GradDrop's masks); start i draws from split(key, S)[i]."""
    compile: Literal["auto", "on", "off"] = "auto"
    """Run the step through torch.compile: 'auto' from 5000 steps (falls back to eager if the
    compiler fails), 'on', or 'off'."""
    record_every: int | None = None
    """Keep every this many steps of each trajectory (default: about 1000 points per run)."""
    out: Path | None = None
    """Also write every trajectory and its losses here as JSON."""


AUTO_COMPILE_STEPS = 5000  # compiling (~30 s cold) pays off from about here


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
    if config.record_every is not None and config.record_every < 1:
        raise ValueError(f"--record-every must be positive; got {config.record_every}.")
    methods = []
    for text in config.methods:
        name, options = parse_method(text)
        methods.append(aggregators.get(
            name, **aggregators.parse(name, _config.option_texts(options, text))))
    starts = datasets.TOY_STARTS[config.starts]
    compile_step = config.compile == "on" or (
        config.compile == "auto" and config.steps >= AUTO_COMPILE_STEPS)
    run_all = functools.partial(
        datasets.toy_trajectories, methods, torch.tensor(starts, dtype=torch.float64),
        steps=config.steps, lr=config.lr, key=random.key(config.seed),
        scale=datasets.TOY_SCALES[config.starts],
        record_every=config.record_every or max(1, config.steps // 1000))
    # torch's own compiler emits deprecation notices about its internals: not for the user.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\._inductor")
    try:
        runs = run_all(compile=compile_step)
    except Exception as error:  # the compiler's failures have no common type
        if config.compile != "auto" or not compile_step:
            raise
        print(f"torch.compile failed ({type(error).__name__}); running eager")
        compile_step = False
        runs = run_all(compile=False)
    results, rows = {}, []
    for m, text in enumerate(config.methods):
        for s, start in enumerate(starts):
            end, losses = runs["trajectory"][m, s, -1], runs["losses"][m, s, -1]
            rows.append([text, f"({start[0]:g}, {start[1]:g})",
                         f"({float(end[0]):.3f}, {float(end[1]):.3f})",
                         f"{float(losses[0]):.4f}", f"{float(losses[1]):.4f}"])
            results.setdefault(text, []).append(
                {"start": list(start), "steps": runs["steps"].tolist(),
                 "trajectory": runs["trajectory"][m, s].tolist(),
                 "losses": runs["losses"][m, s].tolist()}
            )
    print(f"toy problem ({config.starts} starts), {config.steps} Adam steps at lr {config.lr}: "
          f"{len(methods)} methods x {len(starts)} starts in {runs['seconds']:.1f} s "
          f"({'compiled' if compile_step else 'eager'}; first step "
          f"{runs['first_step_seconds']:.1f} s)")
    print(experiment.table(["method", "start", "end", "loss 1", "loss 2"], rows))
    if config.out is not None:
        _io.write_json(config.out, {"starts": config.starts, "steps": config.steps,
                                    "lr": config.lr, "compiled": compile_step,
                                    "seconds": runs["seconds"], "runs": results})
        print(f"wrote {config.out}")
    return 0
