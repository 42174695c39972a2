"""Entry point: ``funcmtl <subcommand> [options]`` built from typed dataclass configs."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union

import torch
import tyro

from funcmtl import distributed, experiment

from . import bench, compare, ensemble, evaluate, methods, plot, toy, train

# Subcommand name -> (config type, runner, one-line description).
_COMMANDS: dict[str, tuple[type, Callable[[Any], int]]] = {
    "train": (train.Train, train.run),
    "compare": (compare.Compare, compare.run),
    "ensemble": (ensemble.Ensemble, ensemble.run),
    "eval": (evaluate.Eval, evaluate.run),
    "plot": (plot.Plot, plot.run),
    "toy": (toy.Toy, toy.run),
    "methods": (methods.Methods, methods.run),
    "bench": (bench.Bench, bench.run),
}


def _split_preset(args: list[str]) -> tuple[str | None, list[str]]:
    """The value of ``--preset`` (if any); presets set defaults, so they are read first."""
    for i, arg in enumerate(args):
        if arg == "--preset" and i + 1 < len(args):
            return args[i + 1], args
        if arg.startswith("--preset="):
            return arg.split("=", 1)[1], args
    return None, args


def _parser_type(command: str | None, preset_name: str | None) -> Any:
    """The Union of subcommands; the chosen one starts from its preset's defaults."""
    options = []
    for name, (cls, _) in _COMMANDS.items():
        default = None
        if name == command and preset_name is not None:
            default = experiment.preset(preset_name, cls)
            default = dataclasses.replace(default, preset=preset_name)
        options.append(Annotated[cls, tyro.conf.subcommand(name, default=default)])
    return Union[tuple(options)]  # noqa: UP007 (a runtime Union of Annotated types)


def os_problem(error: OSError) -> str:
    """One line for a failed file operation: where, and what the system said."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}cannot write: the disk is full ({reason}); free some space (or choose "
                "another --out) and run again; files written before are intact.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{reason}; choose a directory you can write to (--out)."
    return f"{where}{reason}."


def main(args: Sequence[str] | None = None) -> int:
    """Parse ``args`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code.

    Bad input (a ``ValueError`` from the library or the config) and a failed file operation
    (an ``OSError``: a full disk, a read-only directory) print one line to stderr and return
    2, without a traceback. A torchrun worker (a process group is up) ends here, with
    :func:`os._exit` after leaving the group (see :func:`_end_worker`).
    """
    return _end_worker(_main(list(sys.argv[1:] if args is None else args)))


def _main(args: list[str]) -> int:
    try:
        command = args[0] if args and args[0] in _COMMANDS else None
        preset_name, args = _split_preset(args)
        if preset_name is not None and command not in ("train", "compare", "ensemble"):
            raise ValueError("--preset applies to train, compare and ensemble.")
        config = tyro.cli(
            _parser_type(command, preset_name),
            prog="funcmtl",
            description="Functional multi-task learning and vectorized ensembles on PyTorch.",
            args=args,
        )
        runner = next(run for cls, run in _COMMANDS.values() if type(config) is cls)
        return runner(config)
    except ValueError as error:
        print(f"funcmtl: error: {error}", file=sys.stderr)
        return 2
    except experiment.Interrupted as stop:  # SIGINT or SIGTERM: a checkpoint was saved
        print(f"funcmtl: {stop}", file=sys.stderr)
        return _interrupted(stop.exit_code)
    except distributed.DistributedError as error:  # another rank failed or timed out
        print(f"funcmtl: error: {error}", file=sys.stderr)
        return _end_worker(1, broken=True)
    except BrokenPipeError:  # `funcmtl ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 1
    except OSError as error:  # a full disk, a read-only --out: atomic writes lost nothing
        print(f"funcmtl: error: {os_problem(error)}", file=sys.stderr)
        return 2


def _interrupted(code: int) -> int:
    """A torchrun worker stopped by SIGINT/SIGTERM (128 + the signal) and saved: it is on its
    way out, and a repeat of the signal (torchrun forwards a terminal's Ctrl-C, Slurm signals
    every process) must not turn its exit into a death by that signal."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    return code


def _end_worker(code: int, *, broken: bool = False) -> int:
    """Leave the process group (if one is up) and end the process with ``code`` at once.

    Once its peers are gone, the group's and the store's C++ destructors at interpreter exit
    can abort ("terminate called without an active exception": SIGABRT), turning a finished
    run or a clean one-line error into a crash; ``os._exit`` skips them (the run directory
    is closed and the output flushed by then). A ``broken`` group (a peer died) is not torn
    down: that can hang or abort too. Without a group (one process, or main() called
    in-process) this returns ``code``.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return code
    if not broken:
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
