"""``trace``: heavy-ball (and Nesterov) momentum, as in ``torch.optim.SGD``."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from funcmtl import tree
from funcmtl.optim import _leafwise
from funcmtl.optim._base import GradientTransformation, PyTree
from funcmtl.optim._checks import check_hyperparameter, flatten_updates


class TraceState(NamedTuple):
    """The momentum buffer."""

    trace: PyTree  # like params: m_t


def trace(decay: float | Tensor, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``m_t = g_t + decay · m_{t-1}`` (``m_0 = 0``); outputs ``m_t``, or with
    Nesterov ``g_t + decay · m_t``.

    This is ``torch.optim.SGD``'s buffer with ``dampening=0`` (its first step sets the
    buffer to ``g_1``, which is what ``m_0 = 0`` gives).

    Args:
        decay: the momentum coefficient, a non-negative number or a 0-dim tensor.
        nesterov: use Nesterov's look-ahead form.

    Returns:
        A :class:`GradientTransformation` with state :class:`TraceState`.

    References:
        Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum
        in deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, 2013.
    """
    check_hyperparameter("decay", decay, low=0)

    def init_fn(params: PyTree) -> TraceState:
        return TraceState(trace=tree.zeros_like(params))

    def update_fn(
        updates: PyTree, state: TraceState, params: PyTree | None = None
    ) -> tuple[PyTree, TraceState]:
        del params
        gs, rebuild, (ms,) = flatten_updates(updates, "trace", state.trace)
        ms = _leafwise.add(gs, ms, decay)  # m_t = g_t + decay · m_{t-1}
        out = _leafwise.add(gs, ms, decay) if nesterov else ms
        return rebuild(out), TraceState(trace=rebuild(ms))

    return GradientTransformation(init_fn, update_fn)
