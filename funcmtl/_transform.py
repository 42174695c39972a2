"""What the three kinds of transform share: optimizers (:mod:`funcmtl.optim`), aggregators
(:mod:`funcmtl.aggregators`) and loss weightings (:mod:`funcmtl.weightings`).

Each is a small ``NamedTuple`` of pure functions whose state is a pytree; a method's factory
is marked with :func:`named`, so that what it builds prints as the call that built it
(``cagrad(c=0.4, rescale=1)``, as torchjd's classes print theirs) and
a stateless one has the one :class:`EmptyState`. Every ``init`` of an aggregator or a
weighting is ``init(num_tasks, *, dtype=torch.float32, device=None)``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
Options = tuple[tuple[str, Any], ...]


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


class InitFn(Protocol):
    """``init`` of an aggregator or a loss weighting: the state for ``num_tasks`` tasks."""

    def __call__(
        self,
        num_tasks: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Any: ...


def check_num_tasks(num_tasks: int) -> None:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"`num_tasks` must be a positive integer; got {num_tasks!r}.")


def check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating torch dtype; got {dtype!r}.")


def check_init(num_tasks: int, dtype: torch.dtype) -> None:
    """The argument checks of an aggregator's or a weighting's ``init``."""
    check_num_tasks(num_tasks)
    check_dtype(dtype)


def stateless_init(
    num_tasks: int, *, dtype: torch.dtype = torch.float32, device: Any = None
) -> EmptyState:
    """``init`` of a method without state: checks its arguments and returns ``()``."""
    del device
    check_init(num_tasks, dtype)
    return EmptyState()


def named(factory: F) -> F:
    """Mark a method factory: what it returns carries the factory's name and the options it
    was built with (every parameter, defaults included), for its ``repr``."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        method = factory(*args, **kwargs)
        return method._replace(name=factory.__name__, options=tuple(bound.arguments.items()))

    return build  # type: ignore[return-value]


def call_repr(kind: str, name: str, options: Options) -> str:
    """``name(option=value, ...)``, or ``Kind(<custom>)`` for one built by hand."""
    if not name:
        return f"{kind}(<custom>)"
    return f"{name}({', '.join(f'{key}={_short(value)}' for key, value in options)})"


def _short(value: Any) -> str:
    """A tensor by its values when it has a few (``tensor([1.0, 2.0])``), else its shape."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 16 and not torch._C._functorch.is_functorch_wrapped_tensor(value):
            return f"tensor({value.tolist()!r})"
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)
