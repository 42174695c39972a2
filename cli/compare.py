"""``funcmtl compare``: every method over several seeds (seeds vectorized as members)."""

from __future__ import annotations

import dataclasses
import sys

from funcmtl import experiment
from funcmtl.experiment import TrainConfig, _build, _config, _io

from ._common import holding_out, parse_method


@dataclasses.dataclass(frozen=True)
class Compare(TrainConfig):
    """Train every method over --seeds seeds and tabulate mean ± std per task and Δm%.

    The seeds of one method train together as vectorized members of one run. Writes
    compare.json and compare.md to --out when given.
    Example: funcmtl compare --methods mean pcgrad mgda cagrad:c=0.4 upgrad --seeds 5
    """

    methods: tuple[str, ...] = ("mean", "pcgrad", "mgda", "cagrad", "upgrad")
    """Methods to compare: 'name' or 'name:key=value,key=value' with the method's options."""
    seeds: int = 3
    """Seeds per method (seed, seed+1, ...: the members of one vectorized run)."""
    preset: str | None = None
    """Start from a preset; any other flag overrides it."""


def run(config: Compare) -> int:
    with holding_out(config):
        return _run(config)


def _run(config: Compare) -> int:
    if config.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer; got {config.seeds}.")
    if not config.methods:
        raise ValueError("--methods needs at least one method.")
    base = dataclasses.replace(
        _config.as_train_config(config), members=config.seeds, out=None, resume=False
    )
    for text in config.methods:  # fail on a bad method before any training
        name, options = parse_method(text)
        _build.resolve_method(
            dataclasses.replace(base, method=name, method_options=options)
        )
    main_rank = _io.is_main_process()
    run_dir = None
    if config.out is not None and main_rank:
        run_dir = _io.open_run_dir(config.out, _config.to_json(config), resume=False)
    splits = experiment.load_splits(base)
    tasks = splits.tasks
    baselines = experiment.single_task_baselines(base, splits)
    results = {}
    for text in config.methods:
        name, options = parse_method(text)
        print(f"method {text} ({config.seeds} seeds)", file=sys.stderr)
        one = experiment.train(
            dataclasses.replace(base, method=name, method_options=options), splits=splits
        )
        test = experiment.summarize(tasks, one.test)
        results[text] = {"test": test, "delta_m_percent": experiment.delta_m(tasks, test,
                                                                             baselines)}
    if not main_rank:  # ranks > 0 of a torchrun job: rank 0 reports
        return 0
    data = {
        "seeds": config.seeds,
        "primary_metric": {t.name: experiment.primary_metric(t) for t in tasks},
        "single_task": baselines,
        "methods": results,
    }
    text_table, markdown = comparison_tables(tasks, data)
    print(text_table)
    if run_dir is not None:
        _io.write_json(config.out / "compare.json", data)
        _io.write_text(config.out / "compare.md", markdown + "\n")
        run_dir.close()
        print(f"wrote {config.out / 'compare.json'} and {config.out / 'compare.md'}")
    return 0


def comparison_tables(tasks, data: dict) -> tuple[str, str]:
    """Plain-text and Markdown tables: one row per method (and the single-task models)."""
    headers = ["method", *(f"{t.name} {data['primary_metric'][t.name]}" for t in tasks), "Δm%"]

    def cells(results: dict) -> list[str]:
        out = []
        for t in tasks:
            entry = results[t.name][data["primary_metric"][t.name]]
            out.append(f"{entry['mean']:.4f} ± {entry['std']:.4f}")
        return out

    rows = [["single-task", *cells(data["single_task"]), "0.00"]]
    for name, result in data["methods"].items():
        rows.append([name, *cells(result["test"]), f"{result['delta_m_percent']:+.2f}"])
    note = (f"test metrics, mean ± std over {data['seeds']} seeds; Δm% against the single-task "
            "models, lower is better")
    return (note + "\n" + experiment.table(headers, rows),
            note + "\n\n" + experiment.table(headers, rows, markdown=True))


