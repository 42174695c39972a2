"""Turn an ``nn.Module`` definition into a pure function of explicit parameters.

``functional(module)`` returns ``(apply, params, buffers)``: ``params`` and ``buffers`` are
``dict[str, Tensor]`` copies of the module's state, and ``apply`` runs the module through
:func:`torch.func.functional_call`::

    outputs, new_buffers = apply(params, buffers, *inputs, train=True, key=key)

``apply`` never mutates its arguments. Buffers are explicit: in training mode BatchNorm's
running statistics are updated on a copy that comes back as ``new_buffers`` (identical to
``buffers`` in eval mode, or ``{}`` for a module without buffers).

Dropout is driven by the key: in the training copy of the definition every ``nn.Dropout``,
``nn.Dropout1d/2d/3d`` is replaced by a key-driven equivalent (same ``p``, same scaling), and
the dropout a module calls itself (``F.dropout`` in a ``forward``, the attention dropout of
``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``) is routed to the key as well
(:mod:`funcmtl._dropout`). So a forward pass is a pure function of ``(params, buffers,
inputs, key)`` and runs per member under ``vmap``. Other random ops a module calls itself
(``torch.randn`` in ``forward``) still use torch's global generator; see
:mod:`funcmtl.random` for how to seed it from a key.

``init(module, key)`` draws fresh parameters by re-running the module's own
``reset_parameters`` logic with torch's generator seeded from the key.

Example:
    >>> net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
    >>> apply, params, buffers = fm.functional(net)
    >>> params, buffers = fm.init(net, fm.random.key(0))
    >>> x, k = torch.randn(8, 4), fm.random.key(1)
    >>> logits, buffers = apply(params, buffers, x, train=True, key=k)
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import torch
from torch import nn

from funcmtl import random
from funcmtl._dropout import (
    GlobalRandomnessCheck,
    KeyedRandomness,
    dropout_scope,
    may_call_random,
    with_keyed_dropout,
)

__all__ = ["Apply", "functional", "init", "load_into"]

Params = dict[str, torch.Tensor]

def _on_meta(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to("meta")


class Apply:
    """The pure forward function of a module definition (see :func:`functional`).

    Calling it: ``apply(params, buffers, *args, train=False, key=None, dropout_rate=None,
    **kwargs) -> (outputs, new_buffers)``.

    Args:
        params: ``dict[str, Tensor]`` with exactly the module's parameter names.
        buffers: ``dict[str, Tensor]`` with the module's buffer names (``{}`` if none).
        train: run in training mode (dropout active, BatchNorm uses and updates batch stats).
        key: key for dropout; required when ``train=True`` and the module has dropout.
        dropout_rate: optional override of every dropout layer's rate (a number or a 0-dim
            tensor, e.g. one rate per ensemble member under vmap). Dropout a module calls
            itself (attention dropout) keeps the rate it asks for.
    """

    def __init__(self, module: nn.Module) -> None:
        self._eval = _on_meta(module).eval()
        self._train = with_keyed_dropout(_on_meta(module)).train()
        # Only modules that may call F.dropout & co themselves need the (per-op) mode.
        self._mode = KeyedRandomness if may_call_random(self._train) else None
        self.param_names = tuple(name for name, _ in module.named_parameters())
        self.buffer_names = tuple(name for name, _ in module.named_buffers())

    @staticmethod
    def _check_names(given: Any, expected: tuple[str, ...], what: str) -> None:
        if not isinstance(given, dict):
            raise ValueError(f"`{what}` must be a dict[str, Tensor]; got {type(given).__name__}.")
        if len(given) == len(expected) and all(name in given for name in expected):
            return
        missing = [n for n in expected if n not in given]
        extra = [n for n in given if n not in expected]
        raise ValueError(
            f"`{what}` must have the module's {what} names; missing {missing[:5]}, "
            f"unexpected {extra[:5]}."
        )

    def __call__(
        self,
        params: Params,
        buffers: Params,
        *args: Any,
        train: bool = False,
        key: torch.Tensor | None = None,
        dropout_rate: torch.Tensor | float | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Params]:
        self._check_names(params, self.param_names, "params")
        self._check_names(buffers, self.buffer_names, "buffers")
        if key is not None:
            random.check_key(key)
            if key.dim() != 1:
                raise ValueError(
                    f"`key` must be a single key of shape (2,); got {tuple(key.shape)}. For "
                    "one key per ensemble member, vmap `apply` over the keys."
                )
        definition = self._train if train else self._eval
        # BatchNorm updates running stats in place: give it copies, hand them back.
        new_buffers = {name: b.clone() for name, b in buffers.items()} if train else buffers
        if train and self._mode is not None:  # only such a module can draw from torch's RNG
            mode, check = self._mode(), GlobalRandomnessCheck(self._train)
        else:
            mode = check = contextlib.nullcontext()
        with dropout_scope(key, dropout_rate), check, mode:
            outputs = torch.func.functional_call(
                definition, (params, new_buffers), args, kwargs, strict=True
            )
        return outputs, new_buffers


def _state(module: nn.Module, device: Any = None, dtype: torch.dtype | None = None):
    def convert(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone()
        return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

    params = {name: convert(p) for name, p in module.named_parameters()}
    buffers = {name: convert(b) for name, b in module.named_buffers()}
    return params, buffers


def functional(module: nn.Module) -> tuple[Apply, Params, Params]:
    """Split a module into its pure forward function and copies of its current state.

    Returns:
        ``(apply, params, buffers)``; ``params``/``buffers`` are detached clones.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"`module` must be a torch.nn.Module; got {type(module).__name__}.")
    params, buffers = _state(module)
    return Apply(module), params, buffers


def init(
    module: nn.Module,
    key: torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Params, Params]:
    """Fresh ``(params, buffers)`` for ``module``, a pure function of ``key``.

    Every submodule's own ``reset_parameters`` (the initialisation the module's author wrote)
    is re-run on a CPU copy with torch's generator seeded from ``key``, so the same key gives
    the same weights on any device. Parameters that no ``reset_parameters`` covers keep the
    definition's values (a warning names them). A module built on the ``meta`` device works.

    Args:
        module: the definition; it is not modified.
        key: key ``(2,)``.
        device: where to put the result (default: CPU).
        dtype: floating dtype of the result (default: the module's).
    """
    random.check_key(key)
    fresh = copy.deepcopy(module)
    if any(t.is_meta for t in (*fresh.parameters(), *fresh.buffers())):
        fresh = fresh.to_empty(device="cpu")
    else:
        fresh = fresh.to("cpu")
    covered: set[int] = set()
    with random.torch_seed(key):
        for sub in fresh.modules():
            reset = getattr(sub, "reset_parameters", None) or getattr(
                sub, "_reset_parameters", None
            )
            if callable(reset):
                reset()
                covered.update(id(p) for p in sub.parameters(recurse=False))
    uncovered = [name for name, p in fresh.named_parameters() if id(p) not in covered]
    if uncovered:
        warnings.warn(
            f"fm.init: no reset_parameters covers {uncovered[:5]}; they keep the definition's "
            "values. Give their module a reset_parameters method to draw them from the key.",
            stacklevel=2,
        )
    return _state(fresh, device=device, dtype=dtype)


def load_into(module: nn.Module, params: Params, buffers: Params | None = None) -> nn.Module:
    """Copy ``params`` (and ``buffers``) into a deep copy of ``module`` and return it.

    The inverse of :func:`functional`: hands a trained pytree back as an ordinary module
    (e.g. one ensemble member, for ``torch.save(module.state_dict())``).
    """
    out = copy.deepcopy(module)
    targets = {"params": dict(out.named_parameters())}
    if buffers is not None:
        targets["buffers"] = dict(out.named_buffers())
    with torch.no_grad():
        for what, given in (("params", params), ("buffers", buffers)):
            if given is None:
                continue
            Apply._check_names(given, tuple(targets[what]), what)
            for name, value in given.items():
                target = targets[what][name]
                if target.shape != value.shape:
                    raise ValueError(
                        f"`{what}['{name}']` must have shape {tuple(target.shape)}; "
                        f"got {tuple(value.shape)}."
                    )
                target.copy_(value)
    return out
