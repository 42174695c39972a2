"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (torchrun, Slurm, docker) at a step all ranks
agree on.

Raising ``KeyboardInterrupt`` wherever the signal lands lets each rank stop at its own step
(and in the middle of a collective): the gathered checkpoint would mix two steps, or the ranks
would wait in different collectives. Instead the handler only records the signal; the loop
all-reduces the flag with the step's other bookkeeping (:meth:`_Layout.agree`), so every rank
learns of it after the same step, saves collectively there, and raises :class:`Interrupted`.

A second signal more than :data:`PATIENCE_S` seconds after the first (the run did not stop:
a step or a collective is stuck) gives up at once with the signal's default action. Repeats
within that window are one request: a terminal's Ctrl-C reaches the ranks both directly and
through torchrun.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
PATIENCE_S = 5.0


class Interrupted(Exception):
    """SIGINT or SIGTERM during training; the run directory holds a checkpoint to
    ``--resume`` from. ``exit_code`` is the shell's convention, 128 + the signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """While active (a ``with`` block in the main thread), SIGINT and SIGTERM set
    :attr:`signum` instead of stopping the process; the previous handlers come back after
    (after a stop, once the repeats have had :data:`PATIENCE_S` seconds to arrive)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._when = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # only it gets signals
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.signum is None:
            self._restore()
            return
        # The run stopped: repeats of the request that stopped it (torchrun forwarding a
        # terminal's Ctrl-C, a rank signalled after its peers agreed) may still be on their
        # way and must not kill the process on its way out. The handler stays: it ignores
        # them for PATIENCE_S seconds, then hands later signals to the previous handler.

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self._when = signum, time.monotonic()
            return
        if time.monotonic() - self._when < PATIENCE_S:
            return
        self._restore()  # stuck: the default action now
        self._deliver(signum, frame)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        """What the handler in place before :meth:`__enter__` would have done."""
        handler = self._previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def agreed(self, signum: int) -> None:
        """The ranks agreed to stop on ``signum`` (this rank may not have received it)."""
        if self.signum is None:
            self.signum, self._when = signum, time.monotonic()

    @staticmethod
    def name_of(signum: int) -> str:
        return signal.Signals(signum).name
