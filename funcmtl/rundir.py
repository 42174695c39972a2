"""A run directory: where one training run keeps its config, metrics, checkpoint and summary.

Layout of ``out/``::

    config.json     the run's configuration (JSON, sorted keys); written atomically
    metrics.jsonl   one JSON record per line, appended as training goes
    checkpoint.pt   the latest train state (:mod:`funcmtl.checkpoint`)
    summary.json    the final results; written atomically
    tensorboard/    event files, only with ``tensorboard=True``
    .lock           while a run is open: its OS lock and pid (:mod:`funcmtl._rundir_lock`)

One run at a time: :meth:`RunDir.open` takes the directory's lock before it reads or writes
anything and refuses a directory another run holds ("DIR is in use by another run (pid N)");
:meth:`RunDir.close` (or the process's death) releases it.

A record in ``metrics.jsonl`` is described in :mod:`funcmtl._metrics_log`.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from funcmtl.rundir import RunDir
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with RunDir.open(Path(tmp) / "a", {"lr": 0.1}, resume=False) as run:
    ...         run.log({"step": 10, "split": "train", "loss": 0.83,
    ...                  "tasks": {"age": {"loss": 0.41}}})
    ...         fm.checkpoint.save(run.checkpoint_path, {"w": torch.ones(2)})
    ...         run.write_summary({"best_val_loss": 0.4})
    ...     sorted(path.name for path in (Path(tmp) / "a").iterdir())
    ...     run.records(), run.read_summary()
    ['checkpoint.pt', 'config.json', 'metrics.jsonl', 'summary.json']
    ([{'loss': 0.83, 'split': 'train', 'step': 10, 'tasks': {'age': {'loss': 0.41}}}],
     {'best_val_loss': 0.4})
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Collection
from pathlib import Path
from typing import Any

from funcmtl import _rundir_lock, _tensorboard, checkpoint
from funcmtl._atomic import append_line, atomic_write, remove_stale_temporaries
from funcmtl._json import decode, differences, encode, write_encoded, write_json
from funcmtl._metrics_log import SPLITS, read_records, record_line

__all__ = [
    "CONFIG", "METRICS", "SPLITS", "SUMMARY", "TENSORBOARD", "RunDir",
    "hold", "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TENSORBOARD = "tensorboard"

hold = _rundir_lock.hold
"""``with hold(out):`` keep ``out``'s lock for a whole command (a run and what it writes
after, e.g. ``summary.json``); a :meth:`RunDir.open` inside the block uses it."""

_WRITTEN = (CONFIG, METRICS, SUMMARY, checkpoint.CHECKPOINT)  # whose stale temporaries go

class RunDir:
    """One training run's directory (final: build it with :meth:`open` or :meth:`existing`)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._writer: Any = None
        self._writer_class: Any = None
        self._pending: Any = None  # the config to write at the first write (see _commit)
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def open(
        cls,
        out: str | os.PathLike,
        config: dict,
        *,
        resume: bool,
        ignore: Collection[str] = (),
        tensorboard: bool = False,
    ) -> RunDir:
        """Start a run in a new or empty ``out``, or continue the run it holds.

        First the directory's lock is taken (refused at once if another run holds it); it is
        held until :meth:`close`. A new run writes ``config.json``. A resumed run needs
        ``config.json`` equal to ``config`` except for the keys in ``ignore``, and a
        checkpoint; ``config.json`` is rewritten with ``config`` (so it records this
        invocation's ``device``, ...) only at the run's first write (:meth:`truncate_log`,
        :meth:`log` or :meth:`write_summary`): load the checkpoint before, and a checkpoint
        you refuse leaves ``out`` untouched. That first write also removes the temporary
        files a killed writer left. Whenever this refuses, nothing in ``out`` has been
        modified.

        Args:
            out: the run directory (the CLI's ``--out``).
            config: the run's configuration, JSON-able (``Path`` and enums are written as
                strings and values; non-finite floats as ``"nan"``/``"inf"``).
            resume: continue the run in ``out`` instead of starting one.
            ignore: config keys (top-level, or dotted paths into nested dicts) that may differ
                from the stored config on resume.
            tensorboard: also write every logged scalar to ``out/tensorboard``.

        Raises:
            ValueError: if another run holds ``out``; if ``out`` holds a run and ``resume`` is
                false, holds other files, holds no resumable run while ``resume`` is true, or
                the configs differ; if ``tensorboard`` is true and the tensorboard package is
                missing.
            OSError: ``out`` cannot be created or written (``filename`` says which path).
        """
        out = Path(out)
        encoded = encode(config, "config")
        summary_writer = _tensorboard.writer_class() if tensorboard else None
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; choose a new or empty directory.")
        if resume and not out.is_dir():
            raise _holds_no_run(out)
        owned = _rundir_lock.held(out) is None
        lock = _rundir_lock.acquire(out)
        if lock.in_use:  # this process already holds it: a second RunDir on one directory
            raise ValueError(
                f"{out} is already open in this process (pid {os.getpid()}); expected one "
                "RunDir per directory: close the first before opening it again."
            )
        try:
            cls._check(out, encoded, resume=resume, ignore=ignore)
            run = cls(out)
            run._pending, run._writer_class = encoded, summary_writer
            if not resume:
                run._commit()
        except BaseException:
            if owned:
                lock.release()
            raise
        lock.in_use = True
        run._finalizer = weakref.finalize(run, _let_go, lock, owned)
        return run

    @classmethod
    def _check(cls, out: Path, encoded: Any, *, resume: bool, ignore: Collection[str]) -> None:
        """Refuse a directory this run cannot start or continue in (nothing is written)."""
        if not any(entry.name != _rundir_lock.LOCK for entry in out.iterdir()):
            if resume:
                raise _holds_no_run(out)
            return
        if not (out / CONFIG).is_file():
            raise ValueError(
                f"--out {out} is not empty and holds no funcmtl run; choose an empty or "
                "new directory."
            )
        if not resume:
            raise ValueError(
                f"--out {out} already holds a run ({CONFIG}); pass --resume to continue it "
                "or choose another --out."
            )
        stored = cls._read_json(out / CONFIG)
        for key, before, now in differences(stored, encoded):
            if key not in ignore and key.split(".")[0] not in ignore:
                raise ValueError(
                    f"cannot resume {out}: config key {key!r} was {before!r} in the run and "
                    f"is {now!r} now; pass the run's value or choose another --out."
                )
        if not (out / checkpoint.CHECKPOINT).is_file():
            raise ValueError(
                f"cannot resume {out}: it holds no {checkpoint.CHECKPOINT} (the run stopped "
                "before its first checkpoint); remove the directory or choose another --out."
            )

    def _commit(self) -> None:
        """The first write of an opened run: remove the temporaries a killed writer left,
        write ``config.json`` and start the TensorBoard writer. A resumed run does this at its
        first write, after the caller has loaded the checkpoint, so that a refused checkpoint
        leaves the directory as it was."""
        if self._pending is None:
            return
        remove_stale_temporaries(self.out, _WRITTEN)
        write_encoded(self.out / CONFIG, self._pending)
        self._pending = None
        if self._writer_class is not None:
            self._writer = self._writer_class(str(self.out / TENSORBOARD))

    @classmethod
    def existing(cls, out: str | os.PathLike) -> RunDir:
        """A finished or running run in ``out``, for reading (nothing is written).

        Raises:
            ValueError: if ``out`` does not hold a run (no ``config.json``).
        """
        out = Path(out)
        if not (out / CONFIG).is_file():
            raise ValueError(
                f"{out} holds no funcmtl run (no {CONFIG}); pass the --out directory of a run."
            )
        return cls(out)

    @property
    def checkpoint_path(self) -> Path:
        """Where the run's checkpoint lives: ``out/checkpoint.pt``."""
        return self.out / checkpoint.CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        """Where the run's records live: ``out/metrics.jsonl``."""
        return self.out / METRICS

    def log(self, record: dict) -> None:
        """Append one record (see the module docstring) to ``metrics.jsonl`` and flush it.

        Raises:
            ValueError: if ``step`` is not an int, ``split`` not one of ``SPLITS``, or a value
                cannot be written as JSON.
        """
        line, step, split = record_line(record)
        self._commit()
        append_line(self.metrics_path, line)
        if self._writer is not None:
            _tensorboard.log(self._writer, record, step, split)

    def _lines(self) -> list[tuple[str, dict]]:
        return read_records(self.metrics_path)

    def records(self, split: str | None = None) -> list[dict]:
        """The parsed records of ``metrics.jsonl`` in order (only ``split``'s if given)."""
        return [
            decode(record)
            for _, record in self._lines()
            if split is None or record.get("split") == split
        ]

    def truncate_log(self, after_step: int) -> None:
        """Keep only the records with ``step <= after_step``, rewriting the file atomically.

        Called on resume with the checkpoint's step, so that an interrupted-then-resumed run
        ends with the same ``metrics.jsonl`` as an uninterrupted one.
        """
        self._commit()
        if not self.metrics_path.is_file():
            return
        kept = "".join(line for line, record in self._lines() if record["step"] <= after_step)
        atomic_write(self.metrics_path, lambda file: file.write(kept.encode()))

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json`` atomically (the same JSON rules as records)."""
        encoded = encode(summary, "summary")
        self._commit()
        write_encoded(self.out / SUMMARY, encoded)

    def read_summary(self) -> dict:
        """The parsed ``summary.json``, non-finite floats restored.

        Raises:
            ValueError: if the run has no summary yet.
        """
        path = self.out / SUMMARY
        if not path.is_file():
            raise ValueError(f"{self.out} has no {SUMMARY} yet; the run has not finished.")
        return decode(self._read_json(path))

    def read_config(self) -> dict:
        """The parsed ``config.json`` as written (non-finite floats stay strings)."""
        return self._read_json(self.out / CONFIG)

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot read {path} ({type(error).__name__}); restore it or choose another --out."
            ) from None

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any, and release the directory's lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _let_go(lock: _rundir_lock.Lock, owned: bool) -> None:
    """A closed (or garbage-collected) RunDir's end: its lock's, if it took the lock."""
    lock.in_use = False
    if owned:
        lock.release()


def _holds_no_run(out: Path) -> ValueError:
    return ValueError(
        f"cannot resume {out}: it holds no run; drop --resume to start a new one there."
    )
