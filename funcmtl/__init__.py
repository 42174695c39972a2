"""funcmtl: functional multi-task learning and vectorized ensembles on pure PyTorch.

Models are stateless parameter pytrees run through ``torch.func.functional_call``; a leading
axis on every leaf is a batch of models, trained in one ``vmap``.
"""

from importlib import metadata as _metadata

from funcmtl import (
    aggregators,
    checkpoint,
    data,
    datasets,
    distributed,
    ensemble,
    experiment,
    losses,
    metrics,
    mtl,
    optim,
    random,
    rundir,
    train,
    tree,
    weightings,
)
from funcmtl._functional import Apply, functional, init, load_into

__all__ = [
    "Apply",
    "aggregators",
    "checkpoint",
    "data",
    "datasets",
    "distributed",
    "ensemble",
    "experiment",
    "functional",
    "init",
    "load_into",
    "losses",
    "metrics",
    "mtl",
    "optim",
    "random",
    "rundir",
    "train",
    "tree",
    "weightings",
]
try:
    __version__ = _metadata.version("funcmtl")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
