"""``funcmtl ensemble``: a vectorized deep ensemble; ensemble vs member metrics, uncertainty."""

from __future__ import annotations

import dataclasses

import torch

from funcmtl import ensemble as ens
from funcmtl import experiment, mtl
from funcmtl.experiment import TrainConfig, _build, _config, _io
from funcmtl.experiment._evaluate import EVAL_BATCH

from ._common import holding_out


@dataclasses.dataclass(frozen=True)
class Ensemble(TrainConfig):
    """Train a deep ensemble (K members, each its own initialisation and data order, in one
    vmapped pass) and compare the ensemble's test metrics with its members'.

    Example: funcmtl ensemble --data multidigits --members 5 --epochs 5
    """

    members: int = 5
    """Ensemble members."""
    preset: str | None = None
    """Start from a preset; any other flag overrides it."""


def combine(task: mtl.Task, outputs: torch.Tensor) -> torch.Tensor:
    """Members' outputs ``(K, N, ...)`` -> the ensemble's: log of the mean probabilities
    (classification), logit of the mean probability (binary), mean (regression)."""
    if task.kind == "classification":
        return ens.mean_log_probs(outputs)
    if task.kind == "binary":
        return torch.logit(torch.sigmoid(outputs).mean(0), eps=1e-7)
    return outputs.mean(0)


def uncertainty(task: mtl.Task, outputs: torch.Tensor) -> dict[str, float]:
    """Mean over test examples of the ensemble's uncertainty for one task."""
    if task.kind == "classification":
        return {
            "predictive_entropy": float(ens.predictive_entropy(outputs).mean()),
            "mutual_information": float(ens.mutual_information(outputs).mean()),
            "disagreement": float(ens.disagreement(outputs).mean()),
        }
    _, variance = ens.mean_and_variance(outputs)
    return {"predictive_std": float(variance.sqrt().mean())}


def run(config: Ensemble) -> int:
    with holding_out(config):
        return _run(config)


def _run(config: Ensemble) -> int:
    result = experiment.train(_config.as_train_config(config))
    if not result.main:  # ranks > 0 of a torchrun job: rank 0 reports
        return 0
    tasks = result.setup.tasks
    test = result.splits.test
    apply = _io.apply_of(result.setup)
    device = _build.resolve_device(config.device)
    with torch.no_grad():
        outputs = ens.predict(apply, result.state.params, result.state.buffers,
                              test.inputs.to(device), batch_size=EVAL_BATCH)
        targets = {n: y.to(device) for n, y in test.targets.items()}
        combined = {t.name: combine(t, outputs[t.name]) for t in tasks}
        ensemble_scores = mtl.task_metrics(tasks, combined, targets)
    members = experiment.summarize(tasks, result.test)
    rows, data = [], {"members": config.members, "tasks": {}}
    for task in tasks:
        spread = uncertainty(task, outputs[task.name])
        entry = {"ensemble": {}, "members": members[task.name], "uncertainty": spread}
        for name, value in ensemble_scores.items():
            owner, _, metric = name.partition("/")
            if owner != task.name:
                continue
            entry["ensemble"][metric] = float(value)
            m = members[task.name][metric]
            rows.append([task.name, metric, f"{float(value):.4f}",
                         f"{m['mean']:.4f} ± {m['std']:.4f}"])
        data["tasks"][task.name] = entry
    print(f"deep ensemble of {config.members} members, {result.steps} steps; test split")
    print(experiment.table(["task", "metric", "ensemble", "members (mean ± std)"], rows))
    print(experiment.table(
        ["task", "uncertainty (mean over test examples)"],
        [[t.name, ", ".join(f"{k} {v:.4f}" for k, v in data["tasks"][t.name]["uncertainty"]
                            .items())] for t in tasks],
    ))
    if config.out is not None:
        _io.write_json(config.out / "ensemble.json", data)
        print(f"run directory: {config.out}")
    return 0
