"""A multi-task model cut at its shared representation: ``x -> z -> {task: output}``.

Per-task gradients are cheap when the model is seen in two parts: a shared *encoder*
``z = encode(shared_params, x)`` and one *head* per task ``outₜ = headₜ(taskₜ_params, z, x)``.
Each task's gradient with respect to ``z`` then costs one small backward through its own
head, and the ``T`` gradients with respect to the shared parameters are one vmapped backward
of the encoder over ``T`` cotangents — instead of ``T`` backward passes through the whole
model, or a vmapped backward of the whole model whose every head sees all ``T`` cotangents.

:func:`split_module` builds a :class:`SplitModel` from any module with a ``shared``
submodule (``x -> z``) and a ``tasks`` submodule exposing ``heads``, a ``ModuleDict`` of
per-task modules called as ``head(z, x)`` — the layout of funcmtl's hard-sharing and MMoE
architectures. Anything else can still use :func:`funcmtl.mtl.task_jacobian` on a plain
``params -> losses`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from funcmtl.functional import Apply

Params = dict[str, torch.Tensor]
Encode = Callable[..., tuple[Any, Params]]
Head = Callable[..., Any]


class SplitModel(NamedTuple):
    """Pure functions for the two parts of a multi-task model.

    ``encode(shared_params, buffers, x, *, train, key) -> (z, new_buffers)`` and, per task,
    ``heads[name](head_params, z, x, *, train, key) -> output``, where ``head_params`` are
    the head's own parameters named relative to it (the full names minus
    ``head_prefixes[name]``). ``shared_names`` and ``task_names[name]`` are full names.
    Heads with equal ``head_signatures`` have the same architecture (their parameters
    stack), so their backward passes can run as one vmapped call.
    """

    encode: Encode
    heads: dict[str, Head]
    shared_names: tuple[str, ...]
    task_names: dict[str, tuple[str, ...]]
    head_prefixes: dict[str, str]
    head_signatures: dict[str, str]


def _strip(prefix: str, params: Params) -> Params:
    return {name[len(prefix) :]: value for name, value in params.items()}


def split_module(module: nn.Module) -> SplitModel:
    """The :class:`SplitModel` of a module laid out as ``shared`` + ``tasks.heads[name]``.

    Raises:
        ValueError: if the module lacks that layout, or has task parameters outside the heads
            (then use :func:`funcmtl.mtl.task_jacobian` on the whole model).
    """
    shared = getattr(module, "shared", None)
    heads = getattr(getattr(module, "tasks", None), "heads", None)
    if not isinstance(shared, nn.Module) or not isinstance(heads, nn.ModuleDict):
        raise ValueError(
            "split_module needs a module with a `shared` submodule (x -> z) and "
            f"`tasks.heads`, a ModuleDict of per-task heads; got {type(module).__name__}."
        )
    names = [name for name, _ in module.named_parameters()]
    shared_names = tuple(n for n in names if n.startswith("shared."))
    task_names = {
        task: tuple(n for n in names if n.startswith(f"tasks.heads.{task}.")) for task in heads
    }
    covered = set(shared_names).union(*task_names.values())
    if len(covered) != len(names):
        loose = [n for n in names if n not in covered]
        raise ValueError(
            "every parameter must belong to `shared` or to one head; found parameters in "
            f"neither: {loose[:5]}."
        )
    if any(n for n, _ in heads.named_buffers()):
        raise ValueError("heads with buffers (e.g. BatchNorm) are not supported; keep buffers "
                         "in the shared encoder.")
    shared_apply = Apply(shared)
    head_applies = {task: Apply(head) for task, head in heads.items()}

    def encode(shared_params: Params, buffers: Params, x: Any, *, train: bool, key=None):
        # Buffers (BatchNorm) live in the encoder; the dict uses the full module's names.
        own = _strip("shared.", buffers)
        z, new_own = shared_apply(
            _strip("shared.", shared_params), own, x, train=train, key=key
        )
        return z, {f"shared.{name}": value for name, value in new_own.items()}

    def make_head(task: str) -> Head:
        def head(head_params: Params, z: Any, x: Any, *, train: bool, key=None):
            return head_applies[task](head_params, {}, z, x, train=train, key=key)[0]

        return head

    return SplitModel(
        encode=encode,
        heads={t: make_head(t) for t in heads},
        shared_names=shared_names,
        task_names=task_names,
        head_prefixes={t: f"tasks.heads.{t}." for t in heads},
        head_signatures={t: _signature(head) for t, head in heads.items()},
    )


def _signature(head: nn.Module) -> str:
    """Architecture and parameter shapes: heads with equal signatures are interchangeable."""
    shapes = [(n, tuple(p.shape), p.dtype) for n, p in head.named_parameters()]
    return f"{head!r}|{shapes}"

