"""Nash-MTL (Navon et al., 2022): the Nash bargaining solution, ``Gα = 1/α``, solved exactly."""

from __future__ import annotations

import torch
from torch import Tensor

from funcmtl import tree
from funcmtl._transform import named
from funcmtl.aggregators._base import (
    Aggregator,
    EmptyState,
    PyTree,
    check_gramian,
    from_weighting,
    stateless_init,
)
from funcmtl.aggregators._nash_point import nash_point
from funcmtl.aggregators._normalize import normalize
from funcmtl.aggregators._options import as_option
from funcmtl.optim._checks import check_hyperparameter


@named
def nash_mtl(max_norm: float = 1.0) -> Aggregator:
    r"""Multi-task learning as a bargaining game: the Nash bargaining solution of the tasks.

    The update :math:`d = J^\top \alpha` maximises :math:`\sum_i \log(g_i^\top d)` in a ball;
    the paper's Claim 3.1 characterises it by

    .. math::
        G \alpha = 1 / \alpha, \quad \alpha > 0, \qquad
        \text{i.e.} \quad g_i^\top d = 1 / \alpha_i \text{ for every task,}

    the unique minimiser of the strictly convex :math:`\tfrac12 \alpha^\top G \alpha -
    \sum_i \log \alpha_i` when the gradients are linearly independent. The official code
    approximates it with up to 20 concave–convex iterations of a cvxpy problem; here it is solved
    exactly (to float round-off) by Newton's method with a fixed number of steps
    (:func:`funcmtl.aggregators._nash_point.nash_point`). The official code divides ``G`` by its
    Frobenius norm only to help its solver (its constraints multiply the norm back in), which
    leaves the fixed point unchanged; this solver likewise normalises only internally. When the
    gradients are linearly dependent the equation may have no solution; a ridge of ``1e-12``
    times each task's ``G_ii`` makes it well-posed (large weights on dependent tasks, ``d``
    stays finite) and leaves the per-task scale invariance exact.

    Scaling one task's gradient by :math:`c > 0` divides its :math:`\alpha_i` by ``c`` and
    leaves ``d`` unchanged (the bargaining solution is invariant to the tasks' scales); ``d``
    is also invariant to a common scale of all gradients. Finally, as the official code clips
    the shared parameters' gradient, ``d`` is rescaled to norm at most ``max_norm``: ``weights``
    by :math:`\sqrt{\alpha^\top G \alpha}`, ``update`` then once more by the norm of ``d`` as
    combined in the gradients' dtype (with dependent gradients :math:`\alpha` is large and in
    float32 the rounding of :math:`J^\top \alpha` alone can exceed the cap).

    Args:
        max_norm: the largest allowed :math:`\lVert d \rVert = \sqrt{\alpha^\top G \alpha}`
            (1.0 by default, as in the official code); ``0`` disables the clipping. A number or a
            0-dim tensor (which ``vmap`` may batch).

    Returns:
        A stateless :class:`Aggregator` with ``weights``. (The official ``update_weights_every``
        reuses stale weights to save solver time; solving here costs little, so it is not
        offered.)

    Example:
        >>> import torch, funcmtl as fm
        >>> grads = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
        >>> w, _ = fm.aggregators.nash_mtl(max_norm=0).weights(grads @ grads.T, None)
        >>> w  # orthogonal gradients: α_i = 1 / ‖g_i‖
        tensor([0.5000, 2.0000])

    References:
        Aviv Navon, Aviv Shamsian, Idan Achituve, Haggai Maron, Kenji Kawaguchi, Gal Chechik,
        Ethan Fetaya, `Multi-Task Learning as a Bargaining Game
        <https://arxiv.org/abs/2202.01017>`_, 2022.
    """
    check_hyperparameter("max_norm", max_norm, low=0)  # 0 disables it
    max_norm = as_option(max_norm)

    def weights_fn(
        gramian: Tensor, state: EmptyState, *, key: Tensor | None = None
    ) -> tuple[Tensor, EmptyState]:
        del key
        check_gramian(gramian)
        q, scale = normalize(gramian)
        # Q α' = 1/α' with Q = G / s gives G α = 1/α for α = α' / √s.
        alpha = nash_point(q) / scale.sqrt()
        if not is_off(max_norm):
            g = gramian.to(torch.float64)
            norm = (alpha @ g @ alpha).clamp(min=0).sqrt()
            alpha = alpha * clip_factor(norm, max_norm)
        return alpha.to(gramian.dtype), state

    weighting = from_weighting(stateless_init, weights_fn)

    def update(task_grads: PyTree, state: EmptyState, *, key: Tensor | None = None):
        direction, state = weighting.update(task_grads, state, key=key)
        if is_off(max_norm):
            return direction, state
        # ‖Jᵀα‖ as combined in the gradients' dtype: with dependent gradients α is large and
        # the rounding of the sum can exceed the cap that √(αᵀGα) satisfies.
        norms = [torch.linalg.vector_norm(x, dtype=torch.float64) for x in tree.leaves(direction)]
        factor = clip_factor(torch.linalg.vector_norm(torch.stack(norms)), max_norm)
        return tree.map(lambda x: x * factor.to(x.dtype), direction), state

    return Aggregator(stateless_init, update, weighting.weights)


def is_off(max_norm: float | Tensor) -> bool:
    """A number 0 disables the clipping statically; a tensor is always used in arithmetic."""
    return isinstance(max_norm, float) and max_norm == 0.0


def clip_factor(norm: Tensor, max_norm: float | Tensor) -> Tensor:
    """``min(1, max_norm / norm)``, and 1 where ``max_norm = 0`` (off) or ``norm = 0``."""
    factor = (max_norm / torch.where(norm > 0, norm, 1.0)).clamp(max=1)
    return torch.where(torch.as_tensor(max_norm > 0), factor, 1.0)
