"""Developer script: write the embedded copy of the 8x8 handwritten digits (``digits.u8.gz``).

Run once, from the repository root, by a developer who has scikit-learn installed::

    python -m funcmtl.datasets._embed_digits

Provenance: the images are the test set of the UCI "Optical Recognition of Handwritten
Digits" data (Alpaydin & Kaynak, 1998; https://archive.ics.uci.edu/dataset/80), 1797 images
of 8x8 pixels with integer intensities 0..16, as bundled with scikit-learn
(``sklearn.datasets.load_digits``, file ``sklearn/datasets/data/digits.csv.gz``; license CC
BY 4.0 at UCI). The library itself never imports scikit-learn: it reads the file this script
writes.

File format (see :mod:`funcmtl.datasets._digits`): a gzip stream (mtime 0, no file name, so the
bytes are reproducible) of ``1797 * 64`` uint8 pixels, image by image in row-major order,
followed by ``1797`` uint8 labels in ``0..9``. No header and no pickle.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

PATH = Path(__file__).with_name("digits.u8.gz")


def encode(images, labels) -> bytes:
    """The gzip bytes of ``images`` ``(n, 8, 8)`` in 0..16 and ``labels`` ``(n,)`` in 0..9."""
    import numpy as np

    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise ValueError(f"expected images (n, 8, 8) and labels (n,); got {images.shape}.")
    if not (np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 16):
        raise ValueError("expected integer pixel intensities in 0..16.")
    raw = images.astype(np.uint8).tobytes() + labels.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as f:
        f.write(raw)
    return buffer.getvalue()


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    PATH.write_bytes(encode(digits.images, digits.target))
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes, {len(digits.target)} images)")


if __name__ == "__main__":
    main()
