"""Reading a data file's named columns: ``.csv``, ``.npz`` and ``.pt``, all untrusted.

Every reader turns whatever a broken or hostile file does to its parser (a truncated
archive, a pickled object, a cell longer than the csv module's limit) into one
``ValueError`` naming the file and what was expected; nothing is ever unpickled beyond
plain tensors (``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import csv
import math
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from funcmtl.checkpoint import unreadable

__all__ = ["EXTENSIONS", "read_columns"]

EXTENSIONS = (".csv", ".npz", ".pt")

def _read_csv(path: Path) -> dict[str, Tensor]:
    """Columns of a CSV with a header row and numbers only (empty cell -> NaN), float64."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        try:
            header, values = _csv_table(path, rows)
        except csv.Error as error:  # e.g. a cell over the csv module's length limit
            raise ValueError(
                f"{path} line {rows.line_num}: not a CSV of numbers ({error})."
            ) from None
        except UnicodeDecodeError:
            raise ValueError(
                f"{path} line {rows.line_num + 1}: not UTF-8 text; expected a CSV of numbers."
            ) from None
    if not values:
        raise ValueError(
            f"{path}: has a header but no data rows; expected at least one row of numbers."
        )
    table = torch.tensor(values, dtype=torch.float64)
    return {name: table[:, j] for j, name in enumerate(header)}


def _csv_table(path: Path, rows) -> tuple[list[str], list[list[float]]]:
    header = next(rows, None)
    if not header:
        raise ValueError(f"{path}: expected a header row of column names; the file is empty.")
    header = [name.strip() for name in header]
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: column names must be unique; got header {header}.")
    values: list[list[float]] = []
    for row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path} line {rows.line_num}: expected {len(header)} cells like the header; "
                f"got {len(row)}."
            )
        parsed = []
        for name, cell in zip(header, row, strict=True):
            cell = cell.strip()
            try:
                parsed.append(float(cell) if cell else math.nan)
            except ValueError:
                raise ValueError(
                    f"{path} line {rows.line_num}, column {name!r}: expected a number; got "
                    f"{cell[:40]!r}{'...' if len(cell) > 40 else ''} (encode categories as "
                    "integers first)."
                ) from None
        values.append(parsed)
    return header, values


def _read_npz(path: Path) -> dict[str, Tensor]:
    try:
        import numpy as np
    except ImportError:
        raise ValueError(
            f"{path}: reading .npz files needs numpy, which is not installed (pip install "
            "numpy), or save the arrays as a .pt dict of tensors instead."
        ) from None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    # A truncated or foreign file fails in many ways (EOFError, BadZipFile, "pickled data"...).
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path}: not a readable .npz archive of numeric arrays ({type(error).__name__}); "
            "write it with np.savez(path, name=array, ...)."
        ) from None
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError(
            f"{path}: holds no arrays; expected named numeric arrays "
            "(np.savez(path, x=..., label=...))."
        )
    columns = {}
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array {name!r} must hold numbers; got dtype {array.dtype}.")
        columns[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    return columns


def _read_pt(path: Path) -> dict[str, Tensor]:
    # weights_only=True: a .pt file is untrusted input, and a plain dict of tensors needs no
    # code execution to load.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # refused pickled objects, truncated archives, random bytes
        raise ValueError(
            f"{path}: not a readable dict of tensors: {unreadable(error)}; write it with "
            "torch.save({'x': tensor, 'label': tensor}, path)."
        ) from None
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()
    ):
        raise ValueError(
            f"{path}: expected a dict of column name -> Tensor (torch.save({{'x': ..., "
            f"'y': ...}})); got {type(loaded).__name__}."
        )
    return {name: value.to(torch.float64) for name, value in loaded.items()}


_READERS = {".csv": _read_csv, ".npz": _read_npz, ".pt": _read_pt}


def read_columns(path: str | Path) -> dict[str, Tensor]:
    """The named columns of a .csv, .npz or .pt file, float64, in file order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(
            f"{path}: unknown file type {suffix or '(none)'!r}; expected one of {EXTENSIONS}."
        )
    if not path.is_file():
        raise ValueError(f"{path}: no such file; check the path (cwd is {Path.cwd()}).")
    columns = _READERS[suffix](path)
    for name, column in columns.items():
        if column.dim() not in (1, 2):
            raise ValueError(
                f"{path}: column {name!r} must be (N,) or (N, k); got shape {tuple(column.shape)}."
            )
    return columns
