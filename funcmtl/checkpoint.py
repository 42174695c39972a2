"""Atomic, safe checkpoints of a whole train state: exact resume after any interruption.

:func:`save` writes a pytree's leaves (tensors bit for bit, and ``int``/``float``/``bool``/
``None`` leaves) with a *fingerprint* of its structure — every leaf's key path, kind, shape and
dtype — and JSON-able metadata. The file holds only plain containers, numbers, strings and
tensors, so :func:`load` reads it with ``torch.load(weights_only=True)``: a checkpoint can never
run code, and one that tries is refused.

The write is atomic: a temporary file in the same directory is written, fsynced and renamed
onto the target, so a crash (or a full disk) mid-save leaves the previous checkpoint intact.

The file also holds the SHA-256 of its contents (structure, metadata, every leaf's bytes);
:func:`load` recomputes it and refuses a file whose bytes changed since (a flipped bit on
disk or in a copy): "PATH is corrupt (checksum mismatch)". Checkpoints of format version 1,
written before checksums, still load, without that check.

:func:`load` rebuilds the tree with the structure of ``like``, a freshly initialised state of
the same configuration (as ``equinox.tree_deserialise_leaves`` does), checks every leaf against
it and moves each tensor to the device of the matching ``like`` leaf.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> state = {"w": torch.arange(3.0), "step": 3}
    >>> fresh_state = {"w": torch.zeros(3), "step": 0}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = Path(tmp)
    ...     fm.checkpoint.save(run / fm.checkpoint.CHECKPOINT, state, metadata={"epoch": 3})
    ...     state, metadata = fm.checkpoint.load(run / fm.checkpoint.CHECKPOINT, like=fresh_state)
    >>> state, metadata
    ({'w': tensor([0., 1., 2.]), 'step': 3}, {'epoch': 3})
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree

from funcmtl._atomic import atomic_write

__all__ = ["CHECKPOINT", "atomic_write", "load", "save"]

PyTree = Any

CHECKPOINT = "checkpoint.pt"
"""The file name of a run's checkpoint inside its run directory."""

_FORMAT = "funcmtl.checkpoint"
_VERSION = 2
_READS = (1, 2)  # version 1 (before checksums) still loads, unverified
_SCALARS = {bool: "bool", int: "int", float: "float", type(None): "none"}


def _entry(name: str, leaf: Any) -> dict[str, Any]:
    """One leaf's fingerprint: key path, kind, and for tensors shape and dtype."""
    if isinstance(leaf, torch.Tensor):
        return {"path": name, "kind": "tensor", "shape": list(leaf.shape), "dtype": str(leaf.dtype)}
    kind = _SCALARS.get(type(leaf))
    if kind is None:
        raise ValueError(
            f"checkpoint leaf {name} is a {type(leaf).__name__}; leaves must be tensors or "
            "int/float/bool/None (store other values in `metadata`)."
        )
    return {"path": name, "kind": kind, "shape": None, "dtype": None}


def _fingerprint(tree: PyTree) -> tuple[list[dict[str, Any]], list[Any]]:
    pairs = pytree.tree_leaves_with_path(tree)
    names = [pytree.keystr(path) or "<root>" for path, _ in pairs]
    leaves = [leaf for _, leaf in pairs]
    return [_entry(n, x) for n, x in zip(names, leaves, strict=True)], leaves


def _describe(entry: dict[str, Any] | None, *, with_path: bool) -> str:
    if entry is None:
        return "no leaf"
    if entry["kind"] == "tensor":
        dtype = str(entry["dtype"]).removeprefix("torch.")
        text = f"a {dtype} tensor of shape {tuple(entry['shape'])}"
    else:
        text = f"{'an' if entry['kind'] == 'int' else 'a'} {entry['kind']} leaf"
    return f"{text} at {entry['path']}" if with_path else text


def save(path: str | os.PathLike, tree: PyTree, *, metadata: dict | None = None) -> None:
    """Atomically write ``tree``'s leaves, structure fingerprint and ``metadata`` to ``path``.

    Tensors are copied to the CPU (only their own elements, not a larger storage they view)
    and stored bit for bit; ``requires_grad`` is not stored (see :func:`load`).

    Args:
        path: the checkpoint file, e.g. ``run_dir / CHECKPOINT``; its directory must exist.
        tree: a pytree (NamedTuples, dicts, lists, tuples) of tensors and int/float/bool/None.
        metadata: JSON-able values (numbers, strings, lists, dicts), e.g. the epoch or the
            config; read back as JSON would (tuples become lists, keys become strings).

    Raises:
        ValueError: if a leaf or ``metadata`` cannot be stored, or the directory is missing.
    """
    fingerprint, leaves = _fingerprint(tree)
    try:
        metadata = json.loads(json.dumps({} if metadata is None else metadata))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint `metadata` must be JSON-able (numbers, strings, lists, dicts); {error}."
        ) from None
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "structure": fingerprint,
        "leaves": [
            x.detach().to("cpu", copy=True) if isinstance(x, torch.Tensor) else x for x in leaves
        ],
        "metadata": metadata,
    }
    payload["sha256"] = _digest(payload)
    atomic_write(path, lambda file: torch.save(payload, file))


def _digest(payload: dict[str, Any]) -> str:
    """SHA-256 of everything a checkpoint holds: structure, metadata and every leaf's bytes."""
    digest = hashlib.sha256()
    scalars = [None if isinstance(x, torch.Tensor) else x for x in payload["leaves"]]
    head = [payload["format"], payload["version"], payload["structure"], payload["metadata"],
            scalars]
    digest.update(json.dumps(head, sort_keys=True).encode())
    for leaf in payload["leaves"]:
        if isinstance(leaf, torch.Tensor):
            raw = leaf.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(raw.numpy().tobytes() if raw.numel() else b"")
    return digest.hexdigest()


def unreadable(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words (never its advice to load
    with ``weights_only=False``)."""
    message = str(error)
    if isinstance(error, pickle.UnpicklingError):
        refused = re.search(r"GLOBAL ([\w.]+)", message)
        if refused:
            return (
                f"it holds a pickled {refused.group(1)}, not only tensors and plain data (refused)"
            )
        return "it is corrupt or holds pickled objects other than tensors and plain data (refused)"
    first = message.strip().splitlines()[0][:120] if message.strip() else ""
    return f"it is corrupt or truncated ({type(error).__name__}{': ' + first if first else ''})"


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; expected a file written by checkpoint.save.")
    try:
        # Files that are not ours (e.g. pickled with protocol 4) make torch warn before failing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, weights_only=True, map_location="cpu")
    # Any failure to parse (a refused pickled object, a truncated archive, random bytes) means
    # the same thing to the caller: this file is not a checkpoint it can use.
    except Exception as error:
        raise ValueError(
            f"{path} is not a readable funcmtl checkpoint: {unreadable(error)}; restore it from a "
            "copy or start a new run."
        ) from None
    valid = (
        isinstance(payload, dict)
        and payload.get("format") == _FORMAT
        and isinstance(payload.get("structure"), list)
        and isinstance(payload.get("leaves"), list)
        and isinstance(payload.get("metadata"), dict)
        and len(payload["structure"]) == len(payload["leaves"])
    )
    if not valid:
        raise ValueError(
            f"{path} is not a funcmtl checkpoint (expected one written by "
            "funcmtl.checkpoint.save); pass the checkpoint file of a funcmtl run."
        )
    if payload.get("version") not in _READS:
        raise ValueError(
            f"{path} is a funcmtl checkpoint of format version {payload.get('version')}; this "
            f"funcmtl reads versions {list(_READS)}; load it with the funcmtl that wrote it."
        )
    if payload["version"] >= 2 and payload.get("sha256") != _safe_digest(payload):
        raise ValueError(
            f"{path} is corrupt (checksum mismatch): its bytes changed after it was written; "
            "restore it from a copy or start a new run."
        )
    return payload


def _safe_digest(payload: dict[str, Any]) -> str | None:
    """:func:`_digest`, or ``None`` where a damaged file makes it uncomputable."""
    try:
        return _digest(payload)
    except (TypeError, ValueError, RuntimeError):
        return None


def load(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict]:
    """Read a checkpoint written by :func:`save` into the structure of ``like``.

    Loading never unpickles arbitrary objects (``torch.load(weights_only=True)``). Each tensor
    moves to the device of its ``like`` leaf and requires grad if that leaf does.

    Args:
        path: the checkpoint file.
        like: a tree of the same configuration, e.g. a freshly initialised train state; only
            its structure, shapes, dtypes and devices are used.

    Returns:
        ``(tree, metadata)``: the saved tree with ``like``'s containers, and the metadata.

    Raises:
        ValueError: if the file is missing, not a funcmtl checkpoint, corrupt or truncated, or
            differs from ``like`` in a leaf's key path, kind, shape or dtype (the message names
            the first differing leaf).
    """
    path = Path(path)
    payload = _read(path)
    found, stored = payload["structure"], payload["leaves"]
    if not all(_consistent(entry, leaf) for entry, leaf in zip(found, stored, strict=True)):
        raise ValueError(
            f"{path} is corrupt: its leaves do not match its own structure record; "
            "restore it from a copy or start a new run."
        )
    expected, like_leaves = _fingerprint(like)
    for index in range(max(len(expected), len(found))):
        want = expected[index] if index < len(expected) else None
        have = found[index] if index < len(found) else None
        if want != have:
            name = (want or have)["path"]
            moved = want is not None and have is not None and want["path"] != have["path"]
            raise ValueError(
                f"checkpoint {path} does not match `like` at leaf {name}: expected "
                f"{_describe(want, with_path=moved)}, found {_describe(have, with_path=moved)} "
                f"(`like` has {len(expected)} leaves, the checkpoint {len(found)}); the "
                "checkpoint was written by a different configuration: load it with the "
                "configuration that wrote it."
            )
    leaves = [_place(x, ref) for x, ref in zip(stored, like_leaves, strict=True)]
    return pytree.tree_unflatten(leaves, pytree.tree_structure(like)), payload["metadata"]


def _consistent(entry: Any, leaf: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    try:
        return _entry(entry["path"], leaf) == entry
    except ValueError:
        return False


def _place(leaf: Any, reference: Any) -> Any:
    if not isinstance(leaf, torch.Tensor):
        return leaf
    leaf = leaf.to(reference.device)
    return leaf.requires_grad_(True) if reference.requires_grad else leaf
