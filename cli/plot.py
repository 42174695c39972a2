"""``funcmtl plot``: draw a run's training curves from its ``metrics.jsonl`` into one PNG.

Three panels over training steps: the total and per-task losses (train solid, validation
dashed, test as dots), the per-task validation metrics, and task-gradient conflict (the
smallest pairwise cosine and the share of negative ones). Records of an ensemble's members
are averaged per step.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import tyro

from funcmtl import checkpoint
from funcmtl.rundir import RunDir

# (split, line style) for losses and metrics; test is usually one evaluation, so a marker.
_STYLES = {
    "train": {"linestyle": "-"},
    "val": {"linestyle": "--"},
    "test": {"marker": "o", "linestyle": "none"},
}
_METRIC_STYLES = ("-", "--", ":", "-.")


@dataclasses.dataclass(frozen=True)
class Plot:
    """Plot a run's losses, validation metrics and task-gradient conflict into a PNG."""

    run: tyro.conf.Positional[Path]
    """The run directory (--out of funcmtl train): funcmtl plot DIR."""

    out: Path | None = None
    """PNG path; default RUN/curves.png"""


Series = dict[tuple[str, ...], list[tuple[int, float]]]


def curves(records: list[dict]) -> Series:
    """Every plotted quantity as ``key -> [(step, value), ...]``, averaged over members.

    Keys are ``(split, task, name)`` for task entries, ``(split, "total", "loss")`` for the
    total loss and ``("train", "conflict", name)`` for conflict; non-finite values become
    ``nan`` (a gap in the line).
    """
    values: dict[tuple[str, ...], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(key: tuple[str, ...], step: int, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[key][step].append(float(value) if math.isfinite(value) else math.nan)

    for record in records:
        split, step = record.get("split"), record["step"]
        add((split, "total", "loss"), step, record.get("loss"))
        for task, entries in (record.get("tasks") or {}).items():
            for name, value in entries.items():
                add((split, task, name), step, value)
        for name, value in (record.get("conflict") or {}).items():
            add((split, "conflict", name), step, value)
    return {
        key: [(step, _mean(group)) for step, group in sorted(by_step.items())]
        for key, by_step in values.items()
    }


def _mean(group: list[float]) -> float:
    finite = [v for v in group if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _draw(axes: Any, points: list[tuple[int, float]], **style: Any) -> None:
    steps, ys = zip(*points, strict=True)
    axes.plot(steps, ys, **style)


def _empty(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="0.4")


def _figure(series: Series, title: str) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("funcmtl plot needs matplotlib: pip install 'funcmtl[plot]'") from None
    tasks = sorted({task for _, task, _ in series if task not in ("total", "conflict")})
    colors = {task: f"C{index % 10}" for index, task in enumerate(tasks)}
    # The object-oriented API draws with Agg and leaves pyplot's global backend alone.
    figure = Figure(figsize=(9, 11), layout="constrained")
    loss_axes, metric_axes, conflict_axes = figure.subplots(3, 1, sharex=True)
    figure.suptitle(title)

    for (split, task, name), points in series.items():
        if name == "loss" and (task in colors or task == "total"):
            color = colors.get(task, "black")
            _draw(loss_axes, points, color=color, label=f"{task} ({split})", **_STYLES[split])
    finite = [y for (_, _, name), pts in series.items() if name == "loss" for _, y in pts]
    if finite and all(y > 0 for y in finite if not math.isnan(y)):
        loss_axes.set_yscale("log")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("total and per-task loss (train solid, validation dashed, test dots)")

    metric_names = sorted({name for s, t, name in series if s == "val" and t in colors} - {"loss"})
    for (split, task, name), points in series.items():
        if split == "val" and task in colors and name in metric_names:
            style = _METRIC_STYLES[metric_names.index(name) % len(_METRIC_STYLES)]
            _draw(metric_axes, points, color=colors[task], linestyle=style, label=f"{task} {name}")
    metric_axes.set_ylabel("metric")
    metric_axes.set_title("per-task validation metrics")
    if not metric_names:
        _empty(metric_axes, "no validation metrics recorded")

    conflict = {name: pts for (s, t, name), pts in series.items() if t == "conflict"}
    for name, points in sorted(conflict.items()):
        _draw(conflict_axes, points, label=name.replace("_", " "))
    conflict_axes.axhline(0.0, color="0.6", linewidth=0.8)
    conflict_axes.set_ylabel("cosine / fraction")
    conflict_axes.set_title("task-gradient conflict")
    if not conflict:
        _empty(conflict_axes, "no conflict recorded (one task?)")
    conflict_axes.set_xlabel("step")

    for axes in (loss_axes, metric_axes, conflict_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", loc="best")
    return figure


def run(config: Plot) -> int:
    if not config.run.is_dir():
        raise ValueError(
            f"run directory {config.run} does not exist; pass the --out directory of funcmtl train."
        )
    run_dir = RunDir.existing(config.run)
    records = run_dir.records()
    if not records:
        raise ValueError(
            f"{run_dir.metrics_path} holds no records; plot a run that has logged a step."
        )
    members = {record["member"] for record in records if record.get("member") is not None}
    title = f"{config.run}" + (f" (mean over {len(members)} members)" if members else "")
    figure = _figure(curves(records), title)
    out = config.out if config.out is not None else config.run / "curves.png"
    checkpoint.atomic_write(out, lambda file: figure.savefig(file, format="png", dpi=120))
    print(out)
    return 0
