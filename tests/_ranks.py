"""Launching 2-process gloo worlds from the tests, robust to a slow, shared machine.

- **No free-port race**: this process hosts the rendezvous store on a port the kernel picks
  (port 0, kept open for the whole launch) and the ranks join it as clients, as they join
  torchrun's agent store (``TORCHELASTIC_USE_AGENT_STORE``). Picking a "free" port and
  handing it over leaves a window in which another test run can take it.
- **No hidden hangs**: every wait has a bound; a rank still running at the bound gets
  SIGABRT first, so that ``faulthandler`` (``PYTHONFAULTHANDLER``) writes its Python stack to
  its log, and is then killed. The failure message carries the logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from funcmtl import checkpoint, experiment
from funcmtl.experiment import _state

ROOT = Path(__file__).resolve().parents[1]


def base_env() -> dict[str, str]:
    """Environment of a worker: one thread (2 ranks share the cores), stacks on SIGABRT."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "PYTHONFAULTHANDLER": "1"}


class Ranks:
    """``world`` processes running ``argv`` as ranks 0..world-1 of one group.

    Use as a context manager: on exit every process still running is killed.
    """

    def __init__(self, argv: list[str], logs: Path, *, world: int = 2) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.logs, self.world = logs, world
        self.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        self.procs: list[subprocess.Popen] = []
        for rank in range(world):
            env = {**base_env(), "RANK": str(rank), "LOCAL_RANK": str(rank),
                   "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(self.store.port), "TORCHELASTIC_USE_AGENT_STORE": "True"}
            with open(self.log_path(rank), "w") as log:
                self.procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log,
                                                   stderr=subprocess.STDOUT))

    def log_path(self, rank: int) -> Path:
        return self.logs / f"rank{rank}.log"

    def log(self, rank: int) -> str:
        return self.log_path(rank).read_text()

    def logs_text(self) -> str:
        return "\n".join(f"--- rank {r}:\n{self.log(r)[-3000:]}" for r in range(self.world))

    def signal(self, rank: int, signum: int) -> None:
        if self.procs[rank].poll() is None:
            self.procs[rank].send_signal(signum)

    def wait(self, timeout: float, ranks: tuple[int, ...] | None = None) -> list[int | None]:
        """Wait up to ``timeout`` s for ``ranks`` (default all); the exit codes of all ranks
        (``None``: still running, and then dumped and killed)."""
        deadline = time.monotonic() + timeout
        for rank in range(self.world) if ranks is None else ranks:
            try:
                self.procs[rank].wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        codes = [proc.poll() for proc in self.procs]
        self.kill()
        return codes

    def kill(self) -> None:
        """Stop every rank still running: SIGABRT (stack dump), then SIGKILL."""
        alive = [p for p in self.procs if p.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGABRT)
        for proc in alive:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Ranks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def funcmtl_argv(args: list[str]) -> list[str]:
    """The command line of ``funcmtl ARGS`` run by this interpreter."""
    return [sys.executable, "-c", "import sys; from funcmtl_cli.main import main; sys.exit(main())",
            *args]


def load_checkpoint(out: Path):
    """``(fresh tree, checkpointed tree, metadata)`` of the run directory ``out``."""
    config = experiment.load_run(out)[0]
    splits = experiment.load_splits(config)
    setup = experiment.build(config, splits, _state.total_steps(config, len(splits.train)))
    like = _state.initial_tree(config, setup, torch.device("cpu"))
    return like, *checkpoint.load(out / checkpoint.CHECKPOINT, like)
