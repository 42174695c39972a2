"""One run per directory: an OS advisory lock on ``DIR/.lock``, held while the run writes.

The lock is ``fcntl.flock`` on ``DIR/.lock``, taken without waiting: a second run on the
same directory is refused at once with ``"DIR is in use by another run (pid N)."`` (the
holder writes its pid into the file). The kernel drops the lock when its process dies, even
by ``kill -9``; a ``.lock`` file left behind by a crash is simply locked again by the next
run. On release the holder deletes the file, so a finished or refused run leaves no trace;
taking the lock checks that the file locked is still the one at ``DIR/.lock`` (not one a
releasing holder just deleted), and retries otherwise.

Within one process the lock of a directory is one :class:`Lock` object, shared: a command
can :func:`hold` the directory around a whole run (``funcmtl train`` keeps it until
``summary.json`` is written) and :meth:`funcmtl.rundir.RunDir.open` inside it uses that hold;
two open ``RunDir`` of one directory are still refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK", "Lock", "acquire", "held", "hold", "in_use"]

LOCK = ".lock"
"""The lock file's name inside a run directory."""

_HELD: dict[str, Lock] = {}  # this process's locks by the directory's real path


class Lock:
    """A held lock on one run directory (build it with :func:`acquire`)."""

    def __init__(self, out: Path, fd: int, created: bool) -> None:
        self.out, self._fd, self._created = out, fd, created
        self.in_use = False  # a RunDir of this process is open on the directory
        self._key = os.path.realpath(out)
        _HELD[self._key] = self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Delete the lock file and drop the lock (idempotent); remove ``out`` again if
        taking the lock created it and nothing else was written there."""
        if self._fd is None:
            return
        _HELD.pop(self._key, None)
        with contextlib.suppress(OSError):
            os.unlink(self.out / LOCK)
        os.close(self._fd)
        self._fd = None
        if self._created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # fails, as it should, unless the directory is empty


def in_use(out: Path, pid: int | None) -> ValueError:
    """The one-line refusal of a run that finds ``out`` in use by process ``pid``."""
    who = "pid unknown" if pid is None else f"pid {pid}"
    return ValueError(f"{out} is in use by another run ({who}).")


def _pid_in(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def held(out: str | os.PathLike) -> Lock | None:
    """The lock this process holds on ``out``, if any."""
    return _HELD.get(os.path.realpath(Path(out)))


def acquire(out: str | os.PathLike) -> Lock:
    """This process's lock on ``out`` (created if missing), taken now or refused.

    Returns the lock this process already holds on ``out``, if any (see :func:`hold`).

    Raises:
        ValueError: another process holds it ("OUT is in use by another run (pid N).") or
            ``out`` is a file.
        OSError: ``out`` cannot be created or written (e.g. a read-only parent).
    """
    out = Path(out)
    mine = held(out)
    if mine is not None:
        return mine
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a new or empty directory.")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise in_use(out, pid) from None
        if _same_file(fd, out / LOCK):
            break
        os.close(fd)  # a releasing holder deleted the file we locked: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return Lock(out, fd, created)


@contextlib.contextmanager
def hold(out: str | os.PathLike) -> Iterator[Lock]:
    """Hold ``out``'s lock for a block (reusing the hold of an enclosing block)."""
    outer = held(out)
    lock = acquire(out)
    try:
        yield lock
    finally:
        if outer is None:
            lock.release()
