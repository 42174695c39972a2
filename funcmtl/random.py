"""JAX-style random keys: explicit, splittable, reproducible, and vmap-able.

A *key* is an ``int64`` tensor of shape ``(2,)`` holding two 32-bit words. Every random
function in funcmtl takes a key and is a pure function of it: the same key always gives the
same numbers, on CPU and CUDA alike, and nothing reads or advances torch's global generator.

A *batch of keys* ``(*B, 2)`` (e.g. ``split(k, 8)``) is mapped over: every function here
treats each key of the batch on its own and puts the batch axes first in its result, so
``f(keys, ...)[i] == f(keys[i], ...)`` — exactly what ``vmap(f)`` over the keys computes.
Only :func:`key_to_seed` and :func:`torch_seed` need one key ``(2,)``.

Random bits come from a counter-based hash (element ``i`` of a draw is ``hash(key, i)``), built
from plain integer tensor ops. So keys work inside ``torch.func.vmap``: vmapping over a stack of
K keys ``(K, 2)`` gives each member its own stream, and member k's numbers are the same as a
solo call with key k — an ensemble trained under vmap is reproducible member by member.

Torch's own random ops (``torch.randn``, ``nn.Dropout``, ``reset_parameters``) read the global
generator instead. :func:`torch_seed` seeds that generator from a key inside a forked RNG
scope. Under ``vmap(..., randomness="different")`` torch draws *different* numbers for each
member from that one global stream, so a call is reproducible for a given key and batch size,
but member k's draws then depend on K. funcmtl's own layers (:func:`funcmtl.functional` swaps
``nn.Dropout`` for a key-driven dropout) use keys, so they do not have that caveat.

Example:
    >>> import funcmtl as fm
    >>> k = fm.random.key(0)
    >>> k_init, k_data = fm.random.split(k)          # (2, 2) -> two keys
    >>> x = fm.random.normal(k_data, (3, 4))
    >>> members = fm.random.split(k_init, 8)          # (8, 2): one key per ensemble member
    >>> step_key = fm.random.fold_in(k, 17)           # a key per training step
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "bernoulli",
    "bits",
    "check_key",
    "fold_in",
    "key_to_seed",
    "key",
    "normal",
    "permutation",
    "randint",
    "split",
    "torch_seed",
    "uniform",
]

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: decorrelates consecutive counters and words
_SPLIT_DOMAIN = 0x5851F42D
_FOLD_DOMAIN = 0x14057B7E


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2^32`` for ``x`` in [0, 2^32) without int64 overflow."""
    low, high = x & 0xFFFF, x >> 16
    return ((low * constant) + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash (the 'lowbias32' xor-shift-multiply construction)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def key(seed: int) -> torch.Tensor:
    """Make a key from a non-negative Python integer (up to 64 bits).

    Returns:
        ``int64`` tensor of shape ``(2,)``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"`seed` must be an integer in [0, 2**64); got {seed!r}.")
    return torch.tensor([(seed >> 32) & _MASK32, seed & _MASK32], dtype=torch.int64)


def check_key(k: torch.Tensor, name: str = "key") -> None:
    """Raise ``ValueError`` unless ``k`` is a key ``(2,)`` or a batch of keys ``(*B, 2)``."""
    if not isinstance(k, torch.Tensor) or k.dtype != torch.int64 or k.shape[-1:] != (2,):
        found = (
            f"{k.dtype} tensor of shape {tuple(k.shape)}"
            if isinstance(k, torch.Tensor)
            else type(k).__name__
        )
        raise ValueError(
            f"`{name}` must be a key (int64 tensor of shape (2,), from fm.random.key, or a "
            f"batch of keys (..., 2)); got {found}."
        )


def bits(k: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """32 random bits per counter value: ``hash(key, counter)`` in [0, 2^32), int64.

    Args:
        k: a key ``(2,)``, or a batch of keys ``(*batch, 2)``; then ``counter`` has shape
            ``(*batch, ...)`` and row ``b`` of it is hashed with key ``b``.
        counter: int64 tensor with values in [0, 2^32); distinct counters give independent
            bits.
    """
    check_key(k)
    # Per-key work first (a few scalar ops), then two bijective mixing rounds per element.
    shape = (*k.shape[:-1], *(1,) * (counter.dim() - (k.dim() - 1)))
    salt = _mix32(k[..., 0] ^ _GOLDEN).reshape(shape)
    offset = k[..., 1].reshape(shape)
    x = _mix32((counter & _MASK32) ^ salt)
    return _mix32((x + offset + _GOLDEN) & _MASK32)


def split(k: torch.Tensor, num: int = 2) -> torch.Tensor:
    """Split a key into ``num`` new independent keys: ``(2,) -> (num, 2)``.

    A batch of keys ``(*B, 2)`` gives ``(*B, num, 2)``, row ``i`` being ``split(k[i], num)``.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"`num` must be a positive integer; got {num!r}.")
    check_key(k)
    counter = _counters((2 * num,), k.device).expand(*k.shape[:-1], 2 * num)
    domain = k ^ torch.tensor([_SPLIT_DOMAIN, 0], device=k.device, dtype=torch.int64)
    return bits(domain, counter).reshape(*k.shape[:-1], num, 2)


def fold_in(k: torch.Tensor, data: int | torch.Tensor) -> torch.Tensor:
    """Derive a new key from ``k`` and an integer (a step number, a member index, ...).

    ``data`` may be a Python int or an int64 tensor of any shape ``D`` (e.g. the train state's
    step counter, or ``arange(T)`` for one key per task at once): the result has shape
    ``(*D, 2)``. A batch of keys ``(*B, 2)`` gives ``(*B, *D, 2)``, row ``i`` being
    ``fold_in(k[i], data)`` (for one datum per key, ``vmap(fold_in)(keys, data)``). Works
    inside vmap and ``torch.compile``.
    """
    check_key(k)
    data = torch.as_tensor(data, dtype=torch.int64, device=k.device)
    shape = (*k.shape[:-1], *(1,) * data.dim())
    # The high 32 bits of `data` go into the key, the low ones into the counter.
    high = _mix32(((data >> 32) & _MASK32) ^ _FOLD_DOMAIN)
    word0 = k[..., 0].reshape(shape) ^ high
    word1 = k[..., 1].reshape(shape).expand_as(word0)
    low = ((data & _MASK32) * 2).expand_as(word0)
    return bits(torch.stack([word0, word1], dim=-1), torch.stack([low, low + 1], dim=-1))


def _counters(shape: Sequence[int], device: torch.device) -> torch.Tensor:
    numel = 1
    for s in shape:
        numel *= int(s)
    return torch.arange(numel, device=device, dtype=torch.int64).reshape(tuple(shape))


def _draw(k: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``bits`` for every element of ``shape``, per key: ``(*B, 2) -> (*B, *shape)``."""
    check_key(k)
    return bits(k, _counters(shape, k.device).expand((*k.shape[:-1], *shape)))


def uniform(
    k: torch.Tensor,
    shape: Sequence[int],
    *,
    low: float | torch.Tensor = 0.0,
    high: float | torch.Tensor = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform samples in the open interval ``(low, high)`` of the given shape.

    A batch of keys ``(*B, 2)`` gives ``(*B, *shape)``, one draw per key (as every sampler).
    """
    raw = _draw(k, shape)
    if dtype == torch.float64:
        unit = (raw.to(torch.float64) + 0.5) * 2.0**-32
    else:
        # 24 bits fit a float32 mantissa exactly, so the result never rounds up to 1.0.
        unit = ((raw >> 8).to(torch.float32) + 0.5) * 2.0**-24
        unit = unit.to(dtype)
    return low + (high - low) * unit


def normal(
    k: torch.Tensor, shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal samples (Box–Muller transform of two uniform streams)."""
    k1, k2 = split(k).unbind(-2)
    u1 = uniform(k1, shape, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    u2 = uniform(k2, shape, dtype=u1.dtype)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).to(dtype)


def bernoulli(
    k: torch.Tensor, p: float | torch.Tensor, shape: Sequence[int]
) -> torch.Tensor:
    """Boolean samples that are ``True`` with probability ``p`` (a number or a tensor)."""
    return uniform(k, shape) < p


def randint(k: torch.Tensor, shape: Sequence[int], low: int, high: int) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` (int64). Used for bootstrap resampling."""
    if high <= low:
        raise ValueError(f"`high` must be greater than `low`; got low={low}, high={high}.")
    span = high - low
    raw = _draw(k, shape)
    # Multiply-shift maps 32 random bits onto [0, span) with bias below span / 2^32.
    return low + ((raw * span) >> 32) if span < 2**31 else low + raw % span


def permutation(k: torch.Tensor, n: int) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` (int64), e.g. a data order or task order.

    With a batch of keys ``(*batch, 2)`` the result is ``(*batch, n)``: one permutation per key,
    each equal to the one that key gives alone.
    """
    return torch.argsort(_draw(k, (n,)), dim=-1)


def key_to_seed(k: torch.Tensor) -> int:
    """A 63-bit integer seed for torch's generators (eager only: reads the tensor)."""
    check_key(k)
    if k.dim() != 1:
        raise ValueError(f"`key` must be a single key of shape (2,); got {tuple(k.shape)}.")
    word0, word1 = (int(v) for v in k.tolist())
    return ((word0 << 32) | word1) & (2**63 - 1)


@contextlib.contextmanager
def torch_seed(k: torch.Tensor, devices: Sequence[torch.device] = ()) -> Iterator[None]:
    """Seed torch's global generator from ``k`` for the ``with`` block, then restore it.

    Use this to make torch's own randomness (``reset_parameters``, ``torch.randn``, random ops
    under ``vmap(randomness="different")``) a pure function of a key without disturbing the
    caller's generator state.

    Args:
        k: key ``(2,)``.
        devices: CUDA devices whose generators should be forked and seeded too.
    """
    seed = key_to_seed(k)
    cuda = [torch.device(d).index or 0 for d in devices if torch.device(d).type == "cuda"]
    with torch.random.fork_rng(devices=cuda):
        # Seed only the generators that fork_rng restores (torch.manual_seed would also
        # reseed every CUDA device for good).
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
