"""Datasets and a key-driven loader (pytrees of tensors with a leading example axis)."""

from funcmtl.data._loader import batches, bootstrap, num_examples, random_split, take
from funcmtl.data._synthetic import blobs, spirals

__all__ = ["batches", "blobs", "bootstrap", "num_examples", "random_split", "spirals", "take"]
