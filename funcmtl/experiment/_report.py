"""Per-task result tables and Δm% (the multi-task performance drop against single-task models)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from torch import Tensor

from funcmtl import mtl

HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "r2": True, "mse": False, "mae": False,
                    "loss": False}


def primary_metric(task: mtl.Task) -> str:
    """The metric Δm% uses for a task: accuracy (classification, binary), MSE (regression)."""
    names = list(task.metrics)
    preferred = "mse" if task.kind == "regression" else "accuracy"
    return preferred if preferred in names else (names[0] if names else "loss")


def member_stats(values: Tensor) -> tuple[float, float]:
    """Mean and sample standard deviation over members (std 0 for one member)."""
    v = values.detach().double().cpu()
    mean = float(v.mean())
    std = float(v.std(unbiased=True)) if v.numel() > 1 else 0.0
    return mean, std


def summarize(tasks: Sequence[mtl.Task], scores: Mapping[str, Tensor]) -> dict:
    """``{task: {metric: {"mean", "std", "members"}}}`` from :func:`_evaluate.scores`."""
    out: dict = {}
    for task in tasks:
        entry = {}
        for name, value in scores.items():
            owner, _, metric = name.partition("/")
            if owner == task.name:
                mean, std = member_stats(value)
                entry[metric] = {
                    "mean": mean,
                    "std": std,
                    "members": [float(v) for v in value.double().cpu()],
                }
        out[task.name] = entry
    return out


def delta_m(
    tasks: Sequence[mtl.Task], results: Mapping[str, Mapping], baselines: Mapping[str, Mapping]
) -> float:
    """Δm% = (100/T) Σₜ (−1)^{hₜ} (Mₜ − Bₜ) / Bₜ on each task's primary metric, ``hₜ = 1`` when
    higher is better: lower is better, and −5 means 5% better than the single-task models on
    average (Maninis et al., CVPR 2019; the convention of Nash-MTL and FAMO's tables).

    A task whose metric is NaN in either run (no labelled example in the split) is left out and
    the mean is over the measured tasks; NaN when none is measured or a baseline is 0."""
    terms = []
    for task in tasks:
        metric = primary_metric(task)
        value = results[task.name][metric]["mean"]
        base = baselines[task.name][metric]["mean"]
        if math.isnan(value) or math.isnan(base):
            continue
        sign = -1.0 if HIGHER_IS_BETTER.get(metric, False) else 1.0
        terms.append(sign * (value - base) / base if base != 0 else math.nan)
    return 100.0 * sum(terms) / len(terms) if terms else math.nan


def _cell(entry: Mapping | None, members: int) -> str:
    if entry is None:
        return "-"
    if members > 1:
        return f"{entry['mean']:.4f} ± {entry['std']:.4f}"
    return f"{entry['mean']:.4f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """An aligned plain-text table, or a Markdown one, rendered by rich (no colour, no wrap)."""
    grid = Table(*headers, box=box.MARKDOWN if markdown else box.SIMPLE_HEAD,
                 show_edge=markdown, pad_edge=markdown)
    for row in rows:
        grid.add_row(*row)
    console = Console(file=io.StringIO(), width=10_000, color_system=None, markup=False,
                      highlight=False, emoji=False)
    console.print(grid)
    lines = [line.rstrip() for line in console.file.getvalue().splitlines()]
    return "\n".join(line for line in lines if line)


def task_table(
    tasks: Sequence[mtl.Task],
    results: Mapping[str, Mapping],
    members: int,
    baselines: Mapping[str, Mapping] | None = None,
) -> str:
    """One row per task: kind and every test metric (mean ± std over members), and the
    single-task baseline's primary metric when given."""
    metrics = []
    for task in tasks:
        metrics += [m for m in results[task.name] if m not in metrics]
    headers = ["task", "kind", *metrics]
    if baselines is not None:
        headers.append("single-task")
    rows = []
    for task in tasks:
        row = [task.name, task.kind]
        row += [_cell(results[task.name].get(m), members) for m in metrics]
        if baselines is not None:
            metric = primary_metric(task)
            row.append(f"{metric} {_cell(baselines[task.name][metric], members)}")
        rows.append(row)
    return table(headers, rows)
