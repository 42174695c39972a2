"""``funcmtl bench aggregators``: one aggregator call on a ``(T, P)`` Jacobian, in one process.

For every aggregator, task count ``T`` and width ``P``, interleaved medians of:
  eager         ``agg.update(J, state, key=key)`` on one Jacobian;
  weights       ``agg.weights(G, state, key=key)`` on its Gramian (the Gramian methods);
  vmap          ``vmap(agg.update)`` over ``K`` Jacobians (K members, each its own state);
  loop          a Python loop of ``K`` eager calls (what vmap must beat);
  torchjd       torchjd's counterpart on one Jacobian, and a loop of ``K`` calls for the
                vmapped row (when torchjd is installed: ``pip install -e ".[bench]"``).
Ratios are funcmtl's time over the peer's (< 1: funcmtl is faster).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import funcmtl as fm
from funcmtl.experiment import table

from ._timing import interleaved_medians, write_json_atomically

# funcmtl name -> (torchjd class name, its constructor's keyword options); None: no peer.
TORCHJD = {
    "mean": ("Mean", {}),
    "sum": ("Sum", {}),
    "pcgrad": ("PCGrad", {}),
    "mgda": ("MGDA", {}),
    "cagrad": ("CAGrad", {"c": 0.5}),
    "upgrad": ("UPGrad", {}),
    "dualproj": ("DualProj", {}),
    "nash_mtl": ("NashMTL", {}),
    "imtl_g": ("IMTLG", {}),
    "graddrop": ("GradDrop", {}),
    "aligned_mtl": ("AlignedMTL", {}),
    "config": ("ConFIG", {}),
}


@dataclasses.dataclass(frozen=True)
class AggregatorsBench:
    """Time one call of every aggregator, eager and vmapped, against torchjd's."""

    aggregators: tuple[str, ...] = ("pcgrad", "mgda", "cagrad", "upgrad", "dualproj",
                                    "nash_mtl", "imtl_g", "graddrop", "gradvac", "aligned_mtl",
                                    "config")
    """Aggregators to time (names of fm.aggregators)."""
    tasks: tuple[int, ...] = (2, 8, 40)
    """Numbers of tasks T."""
    params: tuple[int, ...] = (1000, 100_000)
    """Widths P of the Jacobian."""
    members: int = 32
    """K of the vmapped row (0: skip it)."""
    threads: int = 1
    """torch threads (1: tiny solves gain nothing from more, and timings are steadier)."""
    rounds: int = 5
    """Interleaved timing rounds; the median is reported."""
    steps: int = 5
    """Calls per contender per round."""
    warmup: int = 2
    """Untimed calls per contender before timing."""
    json: Path | None = None
    """Also write the results here as JSON."""


def _jacobians(count: int, num_tasks: int, width: int) -> torch.Tensor:
    """``(count, T, P)`` float32 with conflicting rows of norms spread over 10×."""
    gen = torch.Generator().manual_seed(num_tasks * 7 + width)
    rows = torch.randn(count, num_tasks, width, generator=gen)
    shared = torch.randn(1, 1, width, generator=gen)
    scales = torch.logspace(0, 1, num_tasks)[None, :, None]
    return (rows + shared) * scales


def _peer(name: str, num_tasks: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if name not in TORCHJD or importlib.util.find_spec("torchjd") is None:
        return None
    from torchjd import aggregation

    cls_name, options = TORCHJD[name]
    cls = getattr(aggregation, cls_name, None)
    if cls is None:
        return None
    if cls_name == "NashMTL":
        options = {**options, "n_tasks": num_tasks}
    return cls(**options)


def _contenders(name: str, jacobians: torch.Tensor, members: int) -> dict[str, Callable]:
    aggregator = fm.aggregators.get(name)
    num_tasks = jacobians.shape[1]
    state = aggregator.init(num_tasks)
    key = fm.random.key(0)
    one = jacobians[0]
    found: dict[str, Callable] = {"eager": lambda: aggregator.update(one, state, key=key)}
    if aggregator.weights is not None:
        gram = (one.double() @ one.double().T)
        found["weights"] = lambda: aggregator.weights(gram, state, key=key)
    peer = _peer(name, num_tasks)
    if peer is not None:
        found["torchjd"] = lambda: peer(one)
    if members:
        batch = jacobians[:members]
        states = fm.tree.stack([state] * members)
        keys = fm.random.split(key, members)
        vmapped = torch.func.vmap(lambda j, s, k: aggregator.update(j, s, key=k),
                                  randomness="different")
        found["vmap"] = lambda: vmapped(batch, states, keys)
        found["loop"] = lambda: [aggregator.update(j, state, key=k)
                                 for j, k in zip(batch, keys, strict=True)]
        if peer is not None:
            found["torchjd_loop"] = lambda: [peer(j) for j in batch]
    return found


def measure(config: AggregatorsBench) -> list[dict]:
    """One record per (aggregator, T, P): every contender's median milliseconds."""
    records = []
    for width in config.params:
        for num_tasks in config.tasks:
            jacobians = _jacobians(max(config.members, 1), num_tasks, width)
            for name in config.aggregators:
                times = interleaved_medians(
                    _contenders(name, jacobians, config.members), device=torch.device("cpu"),
                    warmup=config.warmup, rounds=config.rounds, steps=config.steps,
                )
                records.append({"aggregator": name, "tasks": num_tasks, "params": width,
                                "ms": times})
    return records


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def report(records: list[dict], members: int) -> str:
    headers = ["aggregator", "T", "P", "eager ms", "weights ms", "torchjd ms", "eager/torchjd",
               f"vmap K={members} ms", "loop ms", "torchjd loop ms", "vmap/torchjd loop"]
    rows = []
    for r in records:
        ms = r["ms"]

        def cell(key: str, ms=ms) -> str:
            return f"{ms[key]:.3f}" if key in ms else "-"

        rows.append([r["aggregator"], str(r["tasks"]), str(r["params"]), cell("eager"),
                     cell("weights"), cell("torchjd"), _ratio(ms.get("eager"), ms.get("torchjd")),
                     cell("vmap"), cell("loop"), cell("torchjd_loop"),
                     _ratio(ms.get("vmap"), ms.get("torchjd_loop"))])
    return table(headers, rows)


def run(config: AggregatorsBench) -> int:
    unknown = [n for n in config.aggregators if n not in fm.aggregators.names()]
    if unknown:
        raise ValueError(f"--aggregators: unknown {unknown}; known {fm.aggregators.names()}.")
    if config.threads < 1 or config.members < 0:
        raise ValueError("--threads must be >= 1 and --members >= 0; got "
                         f"{config.threads} and {config.members}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with warnings.catch_warnings():  # the peer's solvers (cvxpy) warn on every problem
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(torchjd|cvxpy)")
            records = measure(config)
    finally:
        torch.set_num_threads(threads)
    if importlib.util.find_spec("torchjd") is None:
        print("torchjd is not installed: no peer columns (pip install -e \".[bench]\")")
    print(report(records, config.members))
    if config.json is not None:
        write_json_atomically(config.json, {"suite": "aggregators",
                                            "config": dataclasses.asdict(config) | {
                                                "json": str(config.json)},
                                            "records": records})
    return 0
