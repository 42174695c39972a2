"""Multi-task learning: task specs, architectures, per-task gradients and the MTL step."""

from funcmtl.mtl._architectures import (
    MultiTaskModel,
    SplitMultiTaskModel,
    TaskHeads,
    output_head,
)
from funcmtl.mtl._cross_stitch import CrossStitch, CrossStitchUnit, cross_stitch_mlp
from funcmtl.mtl._hard_sharing import HardSharing, RepresentationHead, hard_sharing_mlp
from funcmtl.mtl._jacobian import chunked_gramian, parameter_chunks, task_jacobian
from funcmtl.mtl._mmoe import MMoE
from funcmtl.mtl._paths import SharedGradients
from funcmtl.mtl._pertask import (
    RowFactors,
    TaskGradients,
    factored_combine,
    factored_gramian,
    representation_rows,
    shared_jacobian,
    task_gradients,
)
from funcmtl.mtl._ple import CGC, PLE
from funcmtl.mtl._reduction import LOCAL, Reduction
from funcmtl.mtl._soft_sharing import SoftSharing, soft_sharing_mlp
from funcmtl.mtl._split import AffineHead, SplitModel, split_module
from funcmtl.mtl._step import MTLState, init_state, make_step
from funcmtl.mtl._task_losses import task_losses, task_metrics
from funcmtl.mtl._tasks import Task, check_tasks, task_weights

__all__ = [
    "CGC",
    "LOCAL",
    "Reduction",
    "SharedGradients",
    "AffineHead",
    "PLE",
    "CrossStitch",
    "CrossStitchUnit",
    "HardSharing",
    "MMoE",
    "MTLState",
    "MultiTaskModel",
    "RepresentationHead",
    "RowFactors",
    "SoftSharing",
    "SplitModel",
    "SplitMultiTaskModel",
    "Task",
    "TaskGradients",
    "TaskHeads",
    "check_tasks",
    "chunked_gramian",
    "cross_stitch_mlp",
    "factored_combine",
    "factored_gramian",
    "hard_sharing_mlp",
    "init_state",
    "make_step",
    "output_head",
    "representation_rows",
    "parameter_chunks",
    "shared_jacobian",
    "soft_sharing_mlp",
    "split_module",
    "task_gradients",
    "task_jacobian",
    "task_losses",
    "task_metrics",
    "task_weights",
]
