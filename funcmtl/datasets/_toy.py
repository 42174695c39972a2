"""The two-objective toy problem of CAGrad, Nash-MTL and FAMO: two losses of one point in R².

Not a supervised dataset (there are no examples): the "model" is the point ``x = (x1, x2)``
itself and the two task losses are fixed functions of it. Their gradients conflict and differ
in scale along the way, so the trajectory of an aggregator from a fixed start shows whether it
reaches the Pareto front (the segment ``x1 ∈ [−7, 7]`` near ``x2 ≈ −8.36``) or stalls. With
``z = tanh(x2)``::

    g_up   = max(tanh(x2 / 2), 0)        g_down = max(tanh(−x2 / 2), 0)
    L1 = g_up · (log max(|0.5 (−x1 − 7) + z|, 5e-6) + 6)
         + g_down · (((x1 − 7)² + 0.1 (x2 + 8)²) / 10 − 20)
    L2 = g_up · (log max(|0.5 (3 − x1) − z + 2|, 5e-6) + 6)
         + g_down · (((x1 + 7)² + 0.1 (x2 + 8)²) / 10 − 20)

as in ``toy.py`` of the CAGrad code (github.com/Cranial-XIX/CAGrad) and
``experiments/toy/problem.py`` of Nash-MTL (github.com/AvivNavon/nash-mtl, reused by FAMO),
where ``L1`` is multiplied by ``scale`` (Nash-MTL and FAMO use 0.1, CAGrad 1). All three run
Adam with learning rate 1e-3 from the starts in :data:`TOY_STARTS` (CAGrad 100k steps,
Nash-MTL 35k, FAMO 50k).

References:
    Liu, Liu, Jin, Stone & Liu, `Conflict-Averse Gradient Descent for Multi-task Learning
    <https://arxiv.org/abs/2110.14048>`_, 2021; Navon et al., `Multi-Task Learning as a
    Bargaining Game <https://arxiv.org/abs/2202.01017>`_, 2022; Liu, Liu, Stone & Liu, `FAMO:
    Fast Adaptive Multitask Optimization <https://arxiv.org/abs/2306.03792>`_, 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import jacrev

from funcmtl import aggregators, optim, random

TOY_STARTS: dict[str, tuple[tuple[float, float], ...]] = {
    "cagrad": ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0)),
    "nash_mtl": ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)),
    "famo": ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)),
}
"""Start points ``(x1, x2)`` of each paper's toy figure."""

TOY_SCALES: dict[str, float] = {"cagrad": 1.0, "nash_mtl": 0.1, "famo": 0.1}
"""The factor on ``L1`` in each paper's toy run (``toy_losses(x, scale=...)``)."""

_LOWER = 5e-6  # floor inside the logs: bounds the losses below near their singular curves


def toy_losses(x: Tensor, *, scale: float = 1.0) -> Tensor:
    """The two toy losses at ``x`` (see the module docstring for the formula).

    Pure, differentiable torch: works under ``torch.func.vmap``, ``jacrev`` and on any device.

    Args:
        x: points ``(..., 2)``.
        scale: factor on the first loss (0.1 in Nash-MTL and FAMO).

    Returns:
        ``(..., 2)``: ``L1`` and ``L2`` at each point.
    """
    if x.shape[-1:] != (2,):
        raise ValueError(f"`x` must have shape (..., 2); got {tuple(x.shape)}.")
    x1, x2 = x[..., 0], x[..., 1]
    z = torch.tanh(x2)
    up = torch.clamp(torch.tanh(0.5 * x2), min=0.0)
    down = torch.clamp(torch.tanh(-0.5 * x2), min=0.0)
    log1 = torch.log(torch.clamp(torch.abs(0.5 * (-x1 - 7.0) + z), min=_LOWER)) + 6.0
    log2 = torch.log(torch.clamp(torch.abs(0.5 * (3.0 - x1) - z + 2.0), min=_LOWER)) + 6.0
    bowl = 0.1 * (x2 + 8.0) ** 2
    quad1 = ((x1 - 7.0) ** 2 + bowl) / 10.0 - 20.0
    quad2 = ((x1 + 7.0) ** 2 + bowl) / 10.0 - 20.0
    loss1 = up * log1 + down * quad1
    loss2 = up * log2 + down * quad2
    return torch.stack([scale * loss1, loss2], dim=-1)


def toy_trajectory(
    aggregator: aggregators.Aggregator | str,
    start: Tensor | Sequence[float],
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    optimizer: str = "adam",
    key: Tensor | None = None,
    scale: float = 1.0,
) -> dict[str, Tensor]:
    """Optimise the toy problem from ``start`` with an aggregator and SGD or Adam.

    Each step takes the ``2 × 2`` Jacobian of :func:`toy_losses` (``jacrev``; row ``t`` is
    task ``t``'s gradient), turns it into one direction with ``aggregator.update`` (key
    ``split(key, steps)[step]``) and applies it with the optimizer.

    Args:
        aggregator: an :class:`~funcmtl.aggregators.Aggregator`, or a name for
            :func:`funcmtl.aggregators.get`.
        start: the initial point ``(2,)``, e.g. ``TOY_STARTS["cagrad"][0]``; a float64 tensor
            keeps the run in float64, anything else runs in float32 (as the papers' code).
        steps: number of updates.
        lr: learning rate.
        optimizer: ``"adam"`` (the papers' choice) or ``"sgd"``.
        key: randomness for aggregators that use it (PCGrad, GradDrop); default ``key(0)``.
        scale: factor on the first loss (see :data:`TOY_SCALES`).

    Returns:
        ``{"trajectory": (steps + 1, 2), "losses": (steps + 1, 2)}``: the point and both
        losses before every step and after the last.

    Example:
        >>> start = fm.datasets.TOY_STARTS["cagrad"][0]
        >>> run = fm.datasets.toy_trajectory("mgda", start, steps=100, lr=0.1)
        >>> run["trajectory"].shape
        torch.Size([101, 2])
        >>> run["losses"][-1] < run["losses"][0]  # MGDA lowers both losses
        tensor([True, True])
    """
    if isinstance(aggregator, str):
        aggregator = aggregators.get(aggregator)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative integer; got {steps!r}.")
    builders = {"adam": optim.adam, "sgd": optim.sgd}
    if optimizer not in builders:
        raise ValueError(f"`optimizer` must be one of {sorted(builders)}; got {optimizer!r}.")
    x = torch.as_tensor(start)
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    if x.shape != (2,):
        raise ValueError(f"`start` must be one point (x1, x2); got shape {tuple(x.shape)}.")
    transform = builders[optimizer](lr)
    params = {"x": x.clone()}
    opt_state = transform.init(params)
    agg_state = aggregator.init(2)
    step_keys = random.split(random.key(0) if key is None else key, max(steps, 1))

    def losses_twice(point: Tensor) -> tuple[Tensor, Tensor]:
        losses = toy_losses(point, scale=scale)
        return losses, losses

    jacobian_and_losses = jacrev(losses_twice, has_aux=True)
    points, values = [params["x"]], []
    for step in range(steps):
        jacobian, losses = jacobian_and_losses(params["x"])  # (tasks, 2), (tasks,)
        values.append(losses)
        direction, agg_state = aggregator.update(jacobian, agg_state, key=step_keys[step])
        updates, opt_state = transform.update({"x": direction}, opt_state, params)
        params = optim.apply_updates(params, updates)
        points.append(params["x"])
    values.append(toy_losses(params["x"], scale=scale))
    return {"trajectory": torch.stack(points).detach(), "losses": torch.stack(values).detach()}
