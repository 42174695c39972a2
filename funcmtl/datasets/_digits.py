"""MultiDigits: pairs of real 8x8 handwritten digits, with two classification tasks and a sum.

A pair puts two digit images side by side, an 8x16 picture flattened to 128 features in
[0, 1]. Its tasks are the ``left`` digit (10 classes), the ``right`` digit (10 classes) and
their ``sum`` (regression) — cross-entropy and MSE in one model, the mix of the classic
multi-task tutorials (MultiMNIST-style pairs, Sabour et al., 2017).

The images are the 1797 digits bundled with scikit-learn (UCI "Optical Recognition of
Handwritten Digits", Alpaydin & Kaynak, 1998), embedded in this package as ``digits.u8.gz``
(see :mod:`funcmtl.datasets._embed_digits` for the format and provenance).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from funcmtl import random
from funcmtl.datasets._dataset import MultiTaskDataset
from funcmtl.mtl import Task

DIGITS_PATH = Path(__file__).with_name("digits.u8.gz")
NUM_DIGITS = 1797
PIXEL_MAX = 16.0  # intensities are counts of set pixels in 4x4 blocks of a 32x32 bitmap
SUM_SCALE = 18.0  # sum / 18 lies in [0, 1]; predicting its mean costs an MSE of about 0.05


@lru_cache(maxsize=1)
def _digits_cached() -> tuple[Tensor, Tensor]:
    if not DIGITS_PATH.is_file():
        raise ValueError(
            f"the embedded digits file {DIGITS_PATH} is missing; reinstall funcmtl or run "
            "`python -m funcmtl.datasets._embed_digits` (needs scikit-learn)."
        )
    raw = bytearray(gzip.decompress(DIGITS_PATH.read_bytes()))
    expected = NUM_DIGITS * 65
    if len(raw) != expected:
        raise ValueError(
            f"{DIGITS_PATH} holds {len(raw)} bytes after gunzip; expected {expected} "
            "(1797 x 64 pixels + 1797 labels). Regenerate it with _embed_digits."
        )
    data = torch.frombuffer(raw, dtype=torch.uint8)
    images = data[: NUM_DIGITS * 64].reshape(NUM_DIGITS, 8, 8).clone()
    labels = data[NUM_DIGITS * 64 :].to(torch.int64)
    return images, labels


def digits() -> tuple[Tensor, Tensor]:
    """The embedded 8x8 digits, exactly as ``sklearn.datasets.load_digits`` returns them.

    Returns:
        ``images`` ``(1797, 8, 8)`` uint8 with intensities 0..16, and ``labels`` ``(1797,)``
        int64 in 0..9 (fresh copies: safe to modify).
    """
    images, labels = _digits_cached()
    return images.clone(), labels.clone()


def _pairs(
    name: str, pool: Tensor, num_pairs: int, key: Tensor, description: str
) -> MultiTaskDataset:
    """``num_pairs`` pairs whose two images are drawn uniformly, with replacement, from ``pool``
    (indices into the embedded digits)."""
    if not isinstance(num_pairs, int) or isinstance(num_pairs, bool) or num_pairs < 1:
        raise ValueError(f"`num_pairs` must be a positive integer; got {num_pairs!r}.")
    images, labels = _digits_cached()
    left, right = pool[random.randint(key, (2, num_pairs), 0, pool.numel())]
    side_by_side = torch.cat([images[left], images[right]], dim=2)  # (pairs, 8, 16)
    inputs = side_by_side.reshape(num_pairs, 128).to(torch.float32) / PIXEL_MAX
    targets = {
        "left": labels[left],
        "right": labels[right],
        "sum": (labels[left] + labels[right]).to(torch.float32) / SUM_SCALE,
    }
    tasks = (
        Task("left", "classification", 10),
        Task("right", "classification", 10),
        Task("sum", "regression"),
    )
    return MultiTaskDataset(name, inputs, targets, tasks, description).validate()


def multidigits(num_pairs: int = 10_000, seed: int = 0) -> MultiTaskDataset:
    """Pairs of digits from all 1797 images, for a quick look or a custom split.

    Do not split this with :func:`~funcmtl.datasets.split` for evaluation: two pairs may share
    an image, so a test pair could show an image seen in training. :func:`multidigits_splits`
    (and ``load_splits("multidigits")``) split the images first.

    Args:
        num_pairs: number of examples ``N``.
        seed: the pairs are a pure function of it.

    Returns:
        A :class:`MultiTaskDataset` with ``inputs`` ``(N, 128)`` — row ``r`` of the 8x16
        picture at columns ``16 r .. 16 r + 15``, the left image first, pixels divided by 16 —
        and targets ``left``, ``right`` (int64 in 0..9) and ``sum`` ``= (left + right) / 18``
        (float32 in [0, 1]).
    """
    pool = torch.arange(NUM_DIGITS)
    return _pairs("multidigits", pool, num_pairs, random.key(seed), _DESCRIPTION)


def multidigits_splits(
    seed: int = 0,
    *,
    num_pairs: Sequence[int] = (8000, 1000, 1000),
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> tuple[MultiTaskDataset, ...]:
    """Train / val / test pairs built from disjoint pools of images: no leakage.

    The 1797 images are first split into pools of sizes ``round(1797 · fraction)`` (a
    permutation from the seed); each split's pairs use only its own pool, so no test image
    appears in a training pair.

    Args:
        seed: the pools and the pairs are a pure function of it.
        num_pairs: number of pairs in each split.
        fractions: share of the 1797 images in each pool; non-negative, summing to 1.

    Returns:
        One :class:`MultiTaskDataset` per split, each as :func:`multidigits` describes.

    Example:
        >>> train, val, test = fm.datasets.multidigits_splits(seed=0)   # 8000, 1000, 1000
    """
    fractions, num_pairs = tuple(fractions), tuple(num_pairs)
    if len(num_pairs) != len(fractions):
        raise ValueError(
            f"`num_pairs` must give one size per fraction ({len(fractions)}); got {num_pairs}."
        )
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must be positive and sum to 1; got {fractions}.")
    k_pool, k_pairs = random.split(random.key(seed))
    order = random.permutation(k_pool, NUM_DIGITS)
    bounds = [round(NUM_DIGITS * sum(fractions[:i])) for i in range(len(fractions) + 1)]
    names = ("train", "val", "test") if len(fractions) == 3 else range(len(fractions))
    keys = random.split(k_pairs, len(fractions))
    return tuple(
        _pairs(f"multidigits/{part}", order[lo:hi], size, k, _DESCRIPTION)
        for part, lo, hi, size, k in zip(
            names, bounds[:-1], bounds[1:], num_pairs, keys, strict=True
        )
    )


_DESCRIPTION = (
    "Pairs of real 8x8 handwritten digits side by side (128 features in [0, 1]); tasks: left "
    "digit, right digit (10 classes each), sum / 18 (regression). Images: UCI optical digits "
    "as bundled with scikit-learn."
)
