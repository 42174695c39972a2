"""A run directory: where one training run keeps its config, metrics, checkpoint and summary.

Layout of ``out/``::

    config.json     the run's configuration (JSON, sorted keys); written atomically
    metrics.jsonl   one JSON record per line, appended as training goes
    checkpoint.pt   the latest train state (:mod:`funcmtl.checkpoint`)
    summary.json    the final results; written atomically
    tensorboard/    event files, only with ``tensorboard=True``

A record in ``metrics.jsonl``::

    {"step": 120,                      # int: updates applied when the record was taken
     "split": "train",                 # "train" | "val" | "test"
     "loss": 0.83,                     # float: the total (weighted) loss
     "tasks": {"age": {"loss": 0.41, "mae": 3.2},      # per task: its loss and metrics
               "gender": {"loss": 0.42, "accuracy": 0.87}},
     "conflict": {"min_cosine": -0.12,                 # train records only: the smallest
                  "negative_fraction": 0.25},          # task-gradient cosine and the share
                                                       # of task pairs with a negative one
     "member": 3}                      # optional int: the ensemble member, if any

Non-finite floats are written as the JSON strings ``"nan"``, ``"inf"`` and ``"-inf"`` (bare
``NaN`` is not JSON); :meth:`RunDir.records` and :meth:`RunDir.read_summary` turn them back
into floats. 0-dim tensors are written as numbers.

Example:
    >>> with RunDir.open(Path("runs/a"), config, resume=False) as run:
    ...     run.log({"step": 10, "split": "train", "loss": loss, "tasks": {...}})
    ...     fm.checkpoint.save(run.checkpoint_path, state)
    ...     run.write_summary({"best_val_loss": 0.4})
"""

from __future__ import annotations

import enum
import json
import math
import numbers
import os
from collections.abc import Collection, Iterator
from pathlib import Path, PurePath
from typing import Any

import torch

from funcmtl import checkpoint

__all__ = ["CONFIG", "METRICS", "RESUMABLE_KEYS", "SPLITS", "SUMMARY", "TENSORBOARD", "RunDir"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TENSORBOARD = "tensorboard"
SPLITS = ("train", "val", "test")

RESUMABLE_KEYS = frozenset({"device", "out", "resume", "steps", "tensorboard"})
"""Config keys that may change when a run is resumed (the default for ``ignore``)."""

_MISSING = "<missing>"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(value: Any, where: str) -> Any:
    """``value`` as plain JSON data: tensors as numbers, non-finite floats as strings."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _encode(value.value, where)
    raise ValueError(
        f"{where} is a {type(value).__name__}, which cannot be written as JSON; pass numbers, "
        "strings, lists, dicts or tensors."
    )


def _decode(value: Any) -> Any:
    """Inverse of the non-finite encoding of :func:`_encode`."""
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _write_json(path: Path, value: Any) -> None:
    checkpoint.atomic_write(path, lambda file: file.write(_dumps(value).encode()))


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Atomically write ``value`` as JSON, encoded like ``config.json`` (tensors as numbers,
    non-finite floats as the strings "nan", "inf", "-inf")."""
    _write_json(Path(path), _encode(value, "value"))


def _differences(stored: Any, given: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Key paths (dotted) where two JSON configs differ, with both values."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in sorted(set(stored) | set(given)):
            yield from _differences(
                stored.get(key, _MISSING), given.get(key, _MISSING), f"{prefix}{key}."
            )
    elif stored != given:
        yield prefix.removesuffix("."), stored, given


class RunDir:
    """One training run's directory (final: build it with :meth:`open` or :meth:`existing`)."""

    def __init__(self, out: Path, *, writer: Any = None) -> None:
        self.out = out
        self._writer = writer

    @classmethod
    def open(
        cls,
        out: str | os.PathLike,
        config: dict,
        *,
        resume: bool,
        ignore: Collection[str] = RESUMABLE_KEYS,
        tensorboard: bool = False,
    ) -> RunDir:
        """Start a run in a new or empty ``out``, or continue the run it holds.

        A new run writes ``config.json``. A resumed run needs ``config.json`` equal to
        ``config`` except for the keys in ``ignore``, and a checkpoint; ``config.json`` is then
        rewritten with ``config`` (so it records this invocation's ``steps``, ``device``, ...).
        Whenever this refuses, nothing in ``out`` has been modified.

        Args:
            out: the run directory (the CLI's ``--out``).
            config: the run's configuration, JSON-able (``Path`` and enums are written as
                strings and values; non-finite floats as ``"nan"``/``"inf"``).
            resume: continue the run in ``out`` instead of starting one.
            ignore: config keys (top-level, or dotted paths into nested dicts) that may differ
                from the stored config on resume.
            tensorboard: also write every logged scalar to ``out/tensorboard``.

        Raises:
            ValueError: if ``out`` holds a run and ``resume`` is false, holds other files,
                holds no resumable run while ``resume`` is true, or the configs differ; if
                ``tensorboard`` is true and the tensorboard package is missing.
        """
        out = Path(out)
        encoded = _encode(config, "config")
        summary_writer = _summary_writer_class() if tensorboard else None
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; choose a new or empty directory.")
        if out.is_dir() and any(out.iterdir()):
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
            for key, before, now in _differences(stored, encoded):
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
        elif resume:
            raise ValueError(
                f"cannot resume {out}: it holds no run; drop --resume to start a new one there."
            )
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / CONFIG, encoded)
        writer = summary_writer(str(out / TENSORBOARD)) if summary_writer else None
        return cls(out, writer=writer)

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
        encoded = _encode(record, "record")
        step, split = encoded.get("step"), encoded.get("split")
        if not isinstance(step, int) or isinstance(step, bool) or split not in SPLITS:
            raise ValueError(
                f"a metrics record needs an int 'step' and a 'split' in {SPLITS}; got step="
                f"{step!r}, split={split!r}."
            )
        line = json.dumps(encoded, sort_keys=True, allow_nan=False) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
        if self._writer is not None:
            self._log_tensorboard(record, step, split)

    def _log_tensorboard(self, record: dict, step: int, split: str) -> None:
        member = record.get("member")
        prefix = split if member is None else f"{split}/member_{int(member)}"
        for name, value in _scalars(_decode(_encode(record, "record"))):
            if name not in ("step", "split", "member"):
                self._writer.add_scalar(f"{prefix}/{name}", value, step)
        self._writer.flush()

    def _lines(self) -> list[tuple[str, dict]]:
        """``metrics.jsonl`` as (raw line, parsed record) pairs.

        A last line cut short by a crash mid-write is dropped; any other bad line is an error.
        """
        if not self.metrics_path.is_file():
            return []
        text = self.metrics_path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        pairs = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) and not line.endswith("\n"):
                    break
                raise ValueError(
                    f"{self.metrics_path} line {number} is not a JSON record; repair or remove "
                    "that line."
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError(
                    f"{self.metrics_path} line {number} is not a record with an int 'step'; "
                    "repair or remove that line."
                )
            pairs.append((line, record))
        return pairs

    def records(self, split: str | None = None) -> list[dict]:
        """The parsed records of ``metrics.jsonl`` in order (only ``split``'s if given)."""
        return [
            _decode(record)
            for _, record in self._lines()
            if split is None or record.get("split") == split
        ]

    def truncate_log(self, after_step: int) -> None:
        """Keep only the records with ``step <= after_step``, rewriting the file atomically.

        Called on resume with the checkpoint's step, so that an interrupted-then-resumed run
        ends with the same ``metrics.jsonl`` as an uninterrupted one.
        """
        if not self.metrics_path.is_file():
            return
        kept = "".join(line for line, record in self._lines() if record["step"] <= after_step)
        checkpoint.atomic_write(self.metrics_path, lambda file: file.write(kept.encode()))

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json`` atomically (the same JSON rules as records)."""
        _write_json(self.out / SUMMARY, _encode(summary, "summary"))

    def read_summary(self) -> dict:
        """The parsed ``summary.json``, non-finite floats restored.

        Raises:
            ValueError: if the run has no summary yet.
        """
        path = self.out / SUMMARY
        if not path.is_file():
            raise ValueError(f"{self.out} has no {SUMMARY} yet; the run has not finished.")
        return _decode(self._read_json(path))

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
        """Flush and close the TensorBoard writer, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _scalars(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a nested record as ``(slash/joined/path, value)``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _scalars(inner, f"{prefix}{key}/")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix.removesuffix("/"), float(value)


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install 'funcmtl[tensorboard]'."
        ) from None
    return SummaryWriter
