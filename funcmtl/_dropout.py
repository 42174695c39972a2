"""Key-driven dropout for :class:`funcmtl.Apply`: layers, and the calls modules make.

Every dropout of a training forward pass draws its mask from the key of the ``apply`` call:
the ``n``-th dropout uses ``fold_in(key, n)``, so the same key reproduces every mask and the
call is a pure function of it (also per member under ``vmap``). Two routes lead here:

- ``nn.Dropout``/``Dropout1d/2d/3d`` layers are swapped for :class:`KeyedDropout`;
- dropout a module calls itself is caught by :class:`KeyedRandomness`, a torch function mode
  active for the whole call: ``F.dropout``, ``F.dropout1d/2d/3d``, ``F.alpha_dropout``,
  ``F.feature_alpha_dropout`` and the attention dropout of
  ``F.scaled_dot_product_attention`` (what ``nn.MultiheadAttention``, hence
  ``nn.TransformerEncoderLayer``, runs), which is then computed by its math definition.
  ``F.rrelu`` in training, whose noise cannot come from the key, is refused.

The mode is only entered when the module holds a submodule whose forward might make such a
call (anything outside ``torch.nn`` and funcmtl, and ``nn.MultiheadAttention``,
``nn.AlphaDropout``, ``nn.RReLU``...), so plain torch.nn networks pay nothing for it (on
a custom MLP its per-op dispatch measured ~4% of an eager training step, on a small CNN and a
one-layer model within noise). Any other draw from torch's generator in a training forward
(``torch.rand`` in a user's forward) on the CPU is refused by :class:`GlobalRandomnessCheck`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from funcmtl import random

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
# torch.nn modules whose forward calls a random function itself.
_RANDOM_TORCH_MODULES = (
    nn.MultiheadAttention, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU,
)
_ALPHA = -1.7580993408473766  # SELU's negative saturation, -scale * alpha


class _DropoutContext(threading.local):
    """The key (and optional rate override) of the forward pass running on this thread."""

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None
        self.rate: torch.Tensor | float | None = None
        self.calls = 0


_context = _DropoutContext()


@contextlib.contextmanager
def dropout_scope(key: torch.Tensor | None, rate: torch.Tensor | float | None) -> Iterator[None]:
    """Make ``key`` (and the rate override) the current forward pass's, for the block."""
    saved = (_context.key, _context.rate, _context.calls)
    _context.key, _context.rate, _context.calls = key, rate, 0
    try:
        yield
    finally:
        _context.key, _context.rate, _context.calls = saved


def _next_key(what: str) -> torch.Tensor:
    if _context.key is None:
        raise ValueError(
            f"This model has dropout ({what}), so `apply(..., train=True)` needs `key=`; "
            "got no key."
        )
    step_key = random.fold_in(_context.key, _context.calls)
    _context.calls += 1
    return step_key


def _keep(x: torch.Tensor, rate, channelwise: bool, what: str) -> torch.Tensor:
    """A ``{0, 1}`` mask in ``x``'s dtype that keeps each entry (or channel) w.p. ``1 - rate``."""
    shape = x.shape[:2] + (1,) * (x.dim() - 2) if channelwise else x.shape
    return (random.uniform(_next_key(what), shape, dtype=x.dtype) >= rate).to(x.dtype)


def keyed_dropout(x: torch.Tensor, rate, channelwise: bool = False, what: str = "dropout"):
    """Inverted dropout of ``x`` (any shape; ``(N, C, ...)`` when ``channelwise``); ``rate = 1``
    gives zeros, as torch's dropout does."""
    # rate = 1 keeps nothing: divide by 1 there instead of 0 (torch's dropout gives zeros).
    return x * _keep(x, rate, channelwise, what) / (1.0 - rate + (rate == 1))


def _alpha_dropout(x: torch.Tensor, rate, channelwise: bool) -> torch.Tensor:
    """Alpha dropout (Klambauer et al., 2017): keeps SELU's zero mean and unit variance."""
    keep = _keep(x, rate, channelwise, "alpha dropout")
    a = 1.0 / math.sqrt((1.0 - rate) * (1.0 + rate * _ALPHA**2))
    return a * (x * keep + _ALPHA * (1.0 - keep)) - a * _ALPHA * rate


class KeyedDropout(nn.Module):
    """Dropout whose mask comes from the key of the current ``apply`` call.

    Each dropout call in a forward pass uses ``fold_in(key, call_index)``, so layers get
    independent masks and the same key reproduces them. ``channelwise`` drops whole channels
    (``(N, C, ...)`` inputs) like ``nn.Dropout1d/2d/3d``.
    """

    def __init__(self, p: float, channelwise: bool = False) -> None:
        super().__init__()
        self.p = p
        self.channelwise = channelwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or (_context.rate is None and self.p == 0):
            return x
        rate = self.p if _context.rate is None else _context.rate
        return keyed_dropout(x, rate, self.channelwise)

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"


def with_keyed_dropout(module: nn.Module) -> nn.Module:
    """Replace torch dropout layers (in place, on a copy we own) by :class:`KeyedDropout`."""
    for name, child in list(module.named_children()):
        if isinstance(child, _DROPOUT_TYPES):
            keyed = KeyedDropout(child.p, channelwise=type(child) is not nn.Dropout)
            setattr(module, name, keyed)
        else:
            with_keyed_dropout(child)
    return module


def may_call_random(module: nn.Module) -> bool:
    """Whether a submodule's own forward might call a random function (see module doc)."""
    for sub in module.modules():
        origin = type(sub).__module__
        trusted = origin.startswith(("torch.nn.", "funcmtl.")) or isinstance(sub, KeyedDropout)
        if not trusted or isinstance(sub, _RANDOM_TORCH_MODULES):
            return True
    return False


class GlobalRandomnessCheck:
    """Refuse a training forward pass that drew from torch's CPU generator.

    Such a draw (``torch.rand`` or ``torch.randn_like`` in a forward, noise the key cannot
    drive) would make two calls with one key differ. Checked in eager mode only, by comparing
    the CPU generator's state (5 kB) before and after, for modules that may call random
    functions (:func:`may_call_random`); under ``vmap`` torch refuses random calls itself.
    Draws from a CUDA generator are not watched.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = type(module).__name__
        self._before: torch.Tensor | None = None

    def __enter__(self) -> GlobalRandomnessCheck:
        if not torch.compiler.is_compiling():
            self._before = torch.default_generator.get_state()
        return self

    def __exit__(self, kind, *rest) -> None:
        if kind is None and self._before is not None:
            if not torch.equal(self._before, torch.default_generator.get_state()):
                raise ValueError(
                    f"{self._module}'s training forward drew from torch's generator (e.g. "
                    "torch.rand or randn_like), which funcmtl's key does not drive: draw the "
                    "noise with fm.random from a key passed to the forward instead."
                )


def _dropout(what: str, channelwise: bool, alpha: bool = False):
    def handler(input, p=0.5, training=True, inplace=False):  # noqa: A002 (torch's names)
        del inplace  # never in place: the caller's tensor stays untouched
        if not training or p == 0:
            return input
        if alpha:
            return _alpha_dropout(input, p, channelwise)
        return keyed_dropout(input, p, channelwise, what)

    return handler


def _attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
    enable_gqa=False,
):
    """``F.scaled_dot_product_attention`` by its definition, with keyed attention dropout."""
    if dropout_p == 0:
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    if enable_gqa:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * factor
    if is_causal:
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    weights = keyed_dropout(torch.softmax(scores, dim=-1), dropout_p, what="attention dropout")
    return weights @ value


def _rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):  # noqa: A002
    if training:
        raise ValueError(
            "F.rrelu (nn.RReLU) in training draws its slopes from torch's generator, not from "
            "the key: use nn.LeakyReLU instead; got training=True."
        )
    return F.rrelu(input, lower, upper, training, inplace)


_HANDLERS = {
    F.dropout: _dropout("F.dropout", channelwise=False),
    F.dropout1d: _dropout("F.dropout1d", channelwise=True),
    F.dropout2d: _dropout("F.dropout2d", channelwise=True),
    F.dropout3d: _dropout("F.dropout3d", channelwise=True),
    F.alpha_dropout: _dropout("F.alpha_dropout", channelwise=False, alpha=True),
    F.feature_alpha_dropout: _dropout("F.feature_alpha_dropout", channelwise=True, alpha=True),
    F.scaled_dot_product_attention: _attention,
    F.rrelu: _rrelu,
}

def _with_globals(fn, **replacements):
    """A copy of the Python function ``fn`` whose global names ``replacements`` are rebound.

    The copy's globals are those of a registered module of its own (``torch.compile`` looks
    globals up by the function's module).
    """
    missing = [name for name in replacements if name not in fn.__globals__]
    if missing:  # torch renamed what its code calls: fail here, not with unkeyed dropout
        raise ImportError(f"{fn.__qualname__} no longer calls {missing}; funcmtl needs an update.")
    home = types.ModuleType(f"{__name__}.keyed_{fn.__name__}")
    home.__dict__.update({**fn.__globals__, **replacements, "__name__": home.__name__})
    sys.modules[home.__name__] = home
    clone = types.FunctionType(fn.__code__, home.__dict__, fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__kwdefaults__, clone.__module__ = fn.__kwdefaults__, home.__name__
    setattr(home, fn.__name__, clone)
    return clone


# The mode is off while a handler runs, so it never sees the calls inside a Python function
# it intercepted: attention's own dropout calls are rebound in a copy of it instead.
_HANDLERS[F.multi_head_attention_forward] = _with_globals(
    F.multi_head_attention_forward,
    dropout=_dropout("attention dropout", channelwise=False),
    scaled_dot_product_attention=_attention,
)


class KeyedRandomness(TorchFunctionMode):
    """Route the dropout calls of a forward pass to the key (see the module doc)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _HANDLERS.get(func, func)(*args, **(kwargs or {}))
