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

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from funcmtl._functional import Apply
from funcmtl.mtl._architectures import SqueezeLast
from funcmtl.mtl._hard_sharing import RepresentationHead

Params = dict[str, torch.Tensor]
Encode = Callable[..., tuple[Any, Params]]
Head = Callable[..., Any]


class AffineHead(NamedTuple):
    """A head that is one ``Linear`` of ``z``: ``out = z Wᵀ + b`` (then ``squeeze(-1)``).

    Such a head's gradient with respect to ``z`` is ``δ W`` (``δ = ∂L/∂out``), so the per-task
    representation gradients have a factored form whose Gramian and weighted sums never need
    the ``(T, B, D)`` rows (:mod:`funcmtl.mtl._pertask`).
    """

    weight: str  # the weight's name among the head's own parameters, shape (O, D)
    bias: str | None  # the bias's name, shape (O,), if any
    squeeze: bool  # the output drops its last axis (O == 1)


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
    # Encoder parameters that belong to one task each (only in a whole-model split): they get
    # the loss-weighted sum of their per-task gradients instead of the aggregate.
    encoder_task_names: tuple[str, ...] = ()
    # Heads that are one Linear of z (see AffineHead): their gradients have a factored form.
    affine_heads: dict[str, AffineHead] = {}
    # The encoder is the whole model and z its output dict (no shared representation).
    whole_model: bool = False


def _strip(prefix: str, params: Params) -> Params:
    return {name[len(prefix) :]: value for name, value in params.items()}


def split_module(
    module: nn.Module,
    *,
    task_names: Sequence[str] | None = None,
    shared_names: Sequence[str] | None = None,
) -> SplitModel:
    """The :class:`SplitModel` of a module laid out as ``shared`` + ``tasks.heads[name]``.

    Any other module whose ``forward(x)`` returns ``{task: output}`` (cross-stitch, soft
    sharing, PLE, your own) gets a *whole-model* split: the "representation" is the output
    dict itself, so per-task gradients come from one backward of the whole model vmapped over
    the T tasks. Such a split needs

    - the task names: ``task_names=``, else the module's ``task_names`` attribute;
    - which parameters the tasks share: ``shared_names=``, else the module's
      ``shared_parameter_names()`` (funcmtl's architectures have both). Shared parameters
      are aggregated; every other one belongs to one task and gets its own task's gradient.
      With neither, every parameter (heads included) is taken as shared, with a warning.

    Paths: ``"exact"`` always; ``"gramian"`` (the same update) when every parameter is
    shared; never ``"representation"`` (the outputs are no shared representation).

    Args:
        module: the model.
        task_names: a whole-model split's tasks (the keys of the output dict).
        shared_names: a whole-model split's shared parameters (names as in
            ``named_parameters()``).

    Raises:
        ValueError: if heads hold buffers, or parameters sit outside ``shared`` and the heads.
    """
    shared = getattr(module, "shared", None)
    heads = getattr(getattr(module, "tasks", None), "heads", None)
    if not isinstance(shared, nn.Module) or not isinstance(heads, nn.ModuleDict):
        return whole_model_split(module, task_names=task_names, shared_names=shared_names)
    if task_names is not None or shared_names is not None:
        raise ValueError(
            "`task_names`/`shared_names` describe a whole-model split; this module has "
            "`shared` and `tasks.heads`, which define the split: got them as well."
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
    head_buffers = [f"tasks.heads.{n}" for n, _ in heads.named_buffers()]
    if head_buffers:
        raise ValueError(
            "heads must not hold buffers (keep BatchNorm and the like in the shared encoder); "
            f"found {head_buffers[:5]}."
        )
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
        affine_heads={t: a for t, a in ((t, _affine(h)) for t, h in heads.items()) if a},
    )


def _affine(head: nn.Module) -> AffineHead | None:
    """The layout of a :class:`RepresentationHead` over a lone ``Linear`` (funcmtl's
    ``output_head`` without hidden layers), else ``None``."""
    if type(head) is not RepresentationHead:
        return None
    net = head.net
    layers = list(net) if type(net) is nn.Sequential else [net]
    prefix = "net.0." if type(net) is nn.Sequential else "net."
    squeeze = len(layers) == 2 and type(layers[1]) is SqueezeLast
    if not (len(layers) == 1 or squeeze) or type(layers[0]) is not nn.Linear:
        return None
    linear = layers[0]
    if squeeze and linear.out_features != 1:
        return None
    bias = prefix + "bias" if linear.bias is not None else None
    return AffineHead(prefix + "weight", bias, squeeze)


def _signature(head: nn.Module) -> str:
    """Architecture and parameter shapes: heads with equal signatures are interchangeable."""
    shapes = [(n, tuple(p.shape), p.dtype) for n, p in head.named_parameters()]
    return f"{head!r}|{shapes}"


def whole_model_split(
    module: nn.Module,
    *,
    task_names: Sequence[str] | None = None,
    shared_names: Sequence[str] | None = None,
) -> SplitModel:
    """A :class:`SplitModel` whose encoder is the whole module (see :func:`split_module`)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"`module` must be a torch.nn.Module; got {type(module).__name__}.")
    apply = Apply(module)
    names = apply.param_names
    tasks = _output_names(module, task_names)
    shared = _shared_names(module, names, shared_names)

    def encode(params: Params, buffers: Params, x: Any, *, train: bool, key=None):
        outputs, new_buffers = apply(params, buffers, x, train=train, key=key)
        if not isinstance(outputs, dict):
            raise ValueError(
                "a whole-model split needs forward(x) to return {task: output}; got "
                f"{type(outputs).__name__}."
            )
        return outputs, new_buffers

    def select(task: str) -> Head:
        def head(head_params: Params, z: Any, x: Any, *, train: bool, key=None):
            del head_params, x, train, key
            return z[task]

        return head

    return SplitModel(
        encode=encode,
        heads={t: select(t) for t in tasks},
        shared_names=tuple(names),
        task_names={t: () for t in tasks},
        head_prefixes={t: "" for t in tasks},
        head_signatures={t: f"select:{t}" for t in tasks},  # never grouped: each picks its own
        encoder_task_names=tuple(n for n in names if n not in shared),
        whole_model=True,
    )


def _output_names(module: nn.Module, given: Sequence[str] | None) -> tuple[str, ...]:
    names = getattr(module, "task_names", None) if given is None else given
    if names is None:
        raise ValueError(
            "a whole-model split needs the task names: pass `task_names=` (the keys of the "
            f"output dict) or give the module a `task_names` attribute; {type(module).__name__} "
            "has none."
        )
    return tuple(names)


def _shared_names(
    module: nn.Module, names: tuple[str, ...], given: Sequence[str] | None
) -> set[str]:
    chooser = getattr(module, "shared_parameter_names", None)
    if given is None and not callable(chooser):
        warnings.warn(
            f"split_module: {type(module).__name__} declares no shared parameters (no "
            "`shared_names=`, no shared_parameter_names()), so every parameter, task heads "
            "included, is aggregated as shared. Pass `shared_names=` to give the others their "
            "own task's gradient.",
            stacklevel=3,
        )
        return set(names)
    shared = set(chooser() if given is None else given)
    unknown = sorted(shared.difference(names))
    if unknown:
        raise ValueError(
            f"`shared_names` has names that are no parameter of {type(module).__name__}: "
            f"{unknown[:5]}; expected names from named_parameters()."
        )
    return shared
