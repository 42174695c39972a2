"""Joining the process group that ``torchrun`` (or any launcher setting its variables) starts.

``torchrun`` starts one process per device and tells each who it is through environment
variables: ``RANK`` (0 .. ``WORLD_SIZE`` - 1, over all machines), ``WORLD_SIZE``,
``LOCAL_RANK`` (the process's index on its machine, which picks its GPU) and
``MASTER_ADDR``/``MASTER_PORT`` (where the ranks meet). :func:`init` reads them and joins the
group; without them it returns a one-process world in which every collective of
:mod:`funcmtl.distributed` is the identity, so one script runs with and without torchrun.

The process group gets a timeout: if a rank crashes, exits early or hangs, the others' next
collective raises :class:`DistributedError` (a crashed peer is noticed at once, a hanging one
after ``timeout_s``) instead of waiting forever.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Context", "DistributedError", "init"]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A rank could not join the group, or a collective failed: another rank exited, crashed,
    or did not arrive within the timeout."""


@dataclass(frozen=True)
class Context:
    """Who this process is in the group, and the group itself (``None`` in a 1-process world).

    Use it as a context manager, ``with fm.distributed.init() as ctx: ...``, so that the
    process group is shut down however the block ends.
    """

    rank: int  # this process, 0 .. world_size - 1
    world_size: int  # processes in the group, over all machines
    local_rank: int  # this process on its machine: picks the GPU
    device: torch.device  # where this rank computes
    backend: str | None  # "nccl", "gloo", ...; None in a 1-process world
    group: Any  # the torch.distributed ProcessGroup; None in a 1-process world
    timeout_s: float  # how long a collective waits for the other ranks
    owns_group: bool = False  # init created the group, so shutdown destroys it

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, reports and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process: collectives communicate."""
        return self.group is not None

    def shutdown(self) -> None:
        """Leave the process group (a no-op in a 1-process world or when it is gone already)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"environment variable {name} must be an integer (torchrun sets it); got {value!r}."
        ) from None


def _device(device: torch.device | str | None, local_rank: int) -> torch.device:
    if device is not None:
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but only {count} CUDA devices are visible; launch at "
            f"most {count} processes per machine (torchrun --nproc-per-node={count})."
        )
    return torch.device("cuda", local_rank)


def init(
    backend: str | None = None,
    *,
    device: torch.device | str | None = None,
    timeout_s: float = 300.0,
) -> Context:
    """Join the process group described by torchrun's environment variables.

    Without ``WORLD_SIZE`` in the environment (a plain ``python script.py``), or with a
    world of one process, no group is created: the result is a 1-process world whose
    collectives return their input, so the same code path runs everywhere.

    Args:
        backend: ``"nccl"`` (NVIDIA GPUs), ``"gloo"`` (CPU) or another torch backend;
            default ``"nccl"`` when ``device`` is a CUDA device, else ``"gloo"``.
        device: where this rank computes; default ``cuda:LOCAL_RANK`` when CUDA is
            available, else the CPU.
        timeout_s: seconds a collective (and joining the group) waits for the other ranks
            before raising :class:`DistributedError`. A crashed rank is noticed sooner.

    Returns:
        a :class:`Context`; call :meth:`Context.shutdown` (or use it in a ``with``) at the end.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (
        math.isfinite(timeout_s) and timeout_s > 0
    ):
        raise ValueError(f"`timeout_s` must be a positive number of seconds; got {timeout_s!r}.")
    if "WORLD_SIZE" not in os.environ:
        return Context(0, 1, 0, _device(device, 0), None, None, float(timeout_s))
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK") if "RANK" in os.environ else 0
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"environment variables RANK={rank} and WORLD_SIZE={world_size} must satisfy "
            "0 <= RANK < WORLD_SIZE."
        )
    chosen = _device(device, local_rank)
    if dist.is_initialized():  # the caller made the group: use it, leave it to them
        group = dist.group.WORLD
        return Context(
            dist.get_rank(), dist.get_world_size(), local_rank, chosen,
            dist.get_backend(group), group, float(timeout_s),
        )
    if world_size == 1:
        return Context(0, 1, local_rank, chosen, None, None, float(timeout_s))
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise ValueError(
            f"a {world_size}-process world needs the environment variables {list(_ENV)} "
            f"(launch with torchrun); missing {missing}."
        )
    backend = backend or ("nccl" if chosen.type == "cuda" else "gloo")
    if backend == "nccl" and chosen.type != "cuda":
        raise ValueError(f"backend='nccl' needs a CUDA device; got device {chosen}.")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(
            backend,
            init_method="env://",  # also reuses torchrun's own store under its rendezvous
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as err:
        raise DistributedError(
            f"rank {rank} of {world_size} could not join the {backend} process group at "
            f"{where} within {timeout_s:g} s: {_first_line(err)}"
        ) from err
    return Context(
        rank, world_size, local_rank, chosen, backend, dist.group.WORLD, float(timeout_s),
        owns_group=True,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
