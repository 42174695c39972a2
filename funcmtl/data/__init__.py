"""Datasets and a key-driven loader (pytrees of tensors with a leading example axis)."""

from funcmtl.data._loader import batches, bootstrap, num_examples, random_split, take

__all__ = ["batches", "bootstrap", "num_examples", "random_split", "take"]
