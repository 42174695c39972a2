"""``funcmtl bench <suite>``: benchmarks against peers, side by side in one process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Union

import tyro

from . import aggregators, ensemble, matmul, pertask

# Suite name -> (config class, runner); each becomes `funcmtl bench <name>`.
SUITES: dict[str, tuple[type, Callable[[Any], int]]] = {
    "aggregators": (aggregators.AggregatorsBench, aggregators.run),
    "ensemble": (ensemble.EnsembleBench, ensemble.run),
    "matmul": (matmul.MatmulBench, matmul.run),
    "pertask": (pertask.PertaskBench, pertask.run),
}


# tyro turns a Union of subcommand-annotated configs into `bench <suite>` choices.
Suite = Union[  # noqa: UP007
    tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, (cls, _) in SUITES.items())
]


@dataclasses.dataclass(frozen=True)
class Bench:
    """Benchmarks that time funcmtl against what a user would otherwise write."""

    suite: tyro.conf.OmitSubcommandPrefixes[Suite]


def run(config: Bench) -> int:
    runner = next(run for cls, run in SUITES.values() if isinstance(config.suite, cls))
    return runner(config.suite)
