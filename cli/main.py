"""Entry point: ``funcmtl <subcommand> [options]`` built from typed dataclass configs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import tyro

from cli import bench, methods

# Subcommand name -> (config type, runner). Later issues add train, compare, ensemble, ...
_COMMANDS: dict[str, tuple[type, Callable[[Any], int]]] = {
    "methods": (methods.Methods, methods.run),
    "bench": (bench.Bench, bench.run),
}


def main(args: Sequence[str] | None = None) -> int:
    """Parse ``args`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code.

    Bad input (a ``ValueError`` from the library or the config) prints one line to stderr
    and returns 2, without a traceback.
    """
    config = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in _COMMANDS.items()},
        prog="funcmtl",
        description="Functional multi-task learning and vectorized ensembles on PyTorch.",
        args=args,
    )
    runner = next(run for cls, run in _COMMANDS.values() if isinstance(config, cls))
    try:
        return runner(config)
    except ValueError as error:
        print(f"funcmtl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
