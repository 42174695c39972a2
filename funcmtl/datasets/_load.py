"""Datasets by name or path: ``load``, ``load_splits``, ``NAMES`` and ``describe``.

The built-ins are ``multidigits`` and ``synthetic``. Any other string is read as a path to a
``.csv``, ``.npz`` or ``.pt`` file (:func:`~funcmtl.datasets.from_file`; pass ``targets=``).
The toy problem of CAGrad / Nash-MTL / FAMO has no examples, so it is not loaded here: see
:func:`~funcmtl.datasets.toy_losses` and :func:`~funcmtl.datasets.toy_trajectory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from funcmtl._registry import Method, registry
from funcmtl.datasets._dataset import MultiTaskDataset, split
from funcmtl.datasets._digits import multidigits, multidigits_splits
from funcmtl.datasets._files import from_file
from funcmtl.datasets._readers import EXTENSIONS
from funcmtl.datasets._synthetic import synthetic

names, _method, _options, _get, _describe, _specs, _parse = registry(
    "dataset",
    (
        Method(
            "multidigits",
            multidigits,
            "Two real 8x8 digits side by side (128 features): left and right digit "
            "(10 classes each) and their sum (regression).",
            "Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI, 1998. "
            "https://archive.ics.uci.edu/dataset/80",
        ),
        Method(
            "synthetic",
            synthetic,
            "Regression tasks with a controlled weight-vector cosine (100 Gaussian features).",
            "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate "
            "Mixture-of-Experts, 2018. https://doi.org/10.1145/3219819.3220007",
        ),
    ),
)
NAMES: tuple[str, ...] = tuple(names())
"""The built-in dataset names."""


def _check_name(name_or_path: object) -> str | Path:
    """A built-in name, or a path with a known extension; else one clear error."""
    if isinstance(name_or_path, Path):
        return name_or_path
    if not isinstance(name_or_path, str):
        raise ValueError(
            f"`name_or_path` must be a dataset name or a file path; got {name_or_path!r}."
        )
    if name_or_path in NAMES:
        return name_or_path
    if Path(name_or_path).suffix.lower() in EXTENSIONS:
        return Path(name_or_path)
    raise ValueError(
        f"unknown dataset {name_or_path!r}: expected one of the built-ins "
        f"({', '.join(NAMES)}) or a path to a {'/'.join(EXTENSIONS)} file."
    )


def load(name_or_path: str | Path, **options: Any) -> MultiTaskDataset:
    """A built-in dataset by name (with its options), or a file (with :func:`from_file`'s).

    For train / val / test use :func:`load_splits`: ``multidigits`` pairs share source
    images, so only its own split keeps test images out of training.

    Example:
        >>> data = fm.datasets.load("synthetic", correlation=0.9, num_tasks=3, num_examples=1000)
        >>> data.inputs.shape, list(data.targets)
        (torch.Size([1000, 100]), ['y1', 'y2', 'y3'])
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "data.csv").write_text("a,b,y\\n1,2,3\\n4,5,6\\n")
        ...     data = fm.datasets.load(Path(tmp) / "data.csv", targets={"y": "regression"})
        >>> data.inputs, data.targets
        (tensor([[1., 2.],
                [4., 5.]]), {'y': tensor([3., 6.])})
    """
    source = _check_name(name_or_path)
    if not isinstance(source, Path):
        return _get(source, **options)
    unknown = [option for option in options if option not in ("inputs", "targets")]
    if "targets" not in options or unknown:
        raise ValueError(
            f"loading the file {str(source)!r} takes targets={{task: spec}} and optionally "
            f"inputs=[columns] (see from_file); got options {sorted(options)}."
        )
    return from_file(source, **options)


def load_splits(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    **options: Any,
) -> tuple[MultiTaskDataset, ...]:
    """Train / val / test of any dataset, without leakage between them.

    ``multidigits`` splits its source images first (:func:`multidigits_splits`, which also
    takes ``num_pairs=(train, val, test)``); ``synthetic`` is generated with ``seed`` and a file
    is read; both are then split by :func:`split` with ``seed``.

    Args:
        name_or_path: a name in :data:`NAMES` or a file path.
        seed: fixes the split (and the generated data).
        fractions: share of each part.
        options: passed to the dataset's builder or to :func:`from_file`.

    Returns:
        One :class:`MultiTaskDataset` per fraction.
    """
    source = _check_name(name_or_path)
    if source == "multidigits":
        unknown = [option for option in options if option != "num_pairs"]
        if unknown:
            raise ValueError(
                f"load_splits('multidigits') has no option {unknown[0]!r}; its options are "
                "seed, fractions, num_pairs."
            )
        return multidigits_splits(seed, fractions=fractions, **options)
    if source == "synthetic":
        return split(load(source, seed=seed, **options), fractions, seed)
    return split(load(source, **options), fractions, seed)


def describe(name: str) -> str:
    """One line for a listing: ``"summary [reference]"``; :data:`NAMES` are the choices."""
    return _describe(name)
