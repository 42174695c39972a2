"""Atomic file writes: a temporary file, fsynced and renamed onto the target.

Readers see the old file or the complete new one, never a torn write; a crash (or a full
disk) mid-write leaves the previous file intact. The temporary file is named
``.NAME.XXXXXXXX.tmp`` next to ``NAME``; one left by a killed writer is removed by
:func:`remove_stale_temporaries` (the run directory calls it once it holds the directory's
lock, so no live writer can own them).

The new file gets the mode of the file it replaces, or ``0o666 & ~umask`` when there is none,
as ``open(path, "w")`` would give it (``tempfile.mkstemp`` alone would make it 0600).

A failing write raises ``OSError`` naming ``path`` (``error.filename``), so that a caller can
say where a full disk or a read-only directory stopped it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO

__all__ = ["append_line", "atomic_write", "remove_stale_temporaries", "with_path"]


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file all at once: ``write`` fills a temporary file that then replaces ``path``.

    The temporary file lives in ``path``'s directory (a rename is atomic only within one file
    system) and is fsynced before the rename. On any exception the temporary file is removed
    and an existing file at ``path`` is untouched.

    Args:
        path: the file to (re)place; its directory must exist.
        write: called with the open binary temporary file.

    Raises:
        ValueError: if ``path``'s directory does not exist.
        OSError: the write failed (full disk, no permission, ...); ``filename`` is ``path``.
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise ValueError(
            f"cannot write {path}: directory {directory} does not exist; create it first."
        )
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise with_path(error, path) from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), _mode_for(path))
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise with_path(error, path) from None
        raise
    _fsync_directory(directory)


def with_path(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name (a failed write on a descriptor has none)."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` (created with mode ``0o666 & ~umask``) all or nothing: a
    failed write (a full disk) is cut back off, and raises ``OSError`` naming ``path``."""
    data = memoryview(line.encode())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as error:
        raise with_path(error, path) from None
    try:
        size = os.fstat(fd).st_size
        while data:
            data = data[os.write(fd, data):]
    except OSError as error:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise with_path(error, path) from None
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some platforms (Windows) cannot open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(directory: Path, names: Collection[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``directory`` for ``names``.

    Only call this while no writer can be running there (a held run-directory lock).
    Returns the removed paths.
    """
    pattern = re.compile(
        r"^\.(" + "|".join(re.escape(n) for n in names) + r")\.[A-Za-z0-9_]+\.tmp$"
    )
    removed = []
    for entry in directory.iterdir():
        if pattern.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed
