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

import time
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from funcmtl import aggregators, optim, random, tree

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
    ``split(key, steps)[step]``) and applies it with the optimizer. One run of
    :func:`toy_trajectories`, which runs many methods and starts as one batch.

    Args:
        aggregator: an :class:`~funcmtl.aggregators.Aggregator`, or a name for
            :func:`funcmtl.aggregators.get`.
        start: the initial point ``(2,)``, e.g. ``TOY_STARTS["cagrad"][0]``; a float64 tensor
            keeps the run in float64, anything else runs in float32 (as the papers' code).
        steps: number of updates.
        lr: learning rate.
        optimizer: ``"adam"`` (the papers' choice) or ``"sgd"``.
        key: randomness for aggregators that use it (GradDrop; PCGrad from 3 tasks);
            default ``key(0)``.
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
    x = torch.as_tensor(start)
    if x.shape != (2,):
        raise ValueError(f"`start` must be one point (x1, x2); got shape {tuple(x.shape)}.")
    key = random.key(0) if key is None else key
    runs = _run([aggregator], x[None], key[None], steps=steps, lr=lr, optimizer=optimizer,
                scale=scale, record_every=1, compile=False)
    return {"trajectory": runs["trajectory"][0, 0], "losses": runs["losses"][0, 0]}


def toy_trajectories(
    methods: Sequence[aggregators.Aggregator | str],
    starts: Tensor | Sequence[Sequence[float]],
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    optimizer: str = "adam",
    key: Tensor | None = None,
    scale: float = 1.0,
    record_every: int = 1,
    compile: bool = False,
) -> dict[str, Tensor]:
    """Every method from every start, as one batch: ``vmap`` over the starts, the methods'
    directions stacked for one optimizer update, and (``compile=True``) one compiled step.

    Run ``(m, s)`` equals ``toy_trajectory(methods[m], starts[s], key=split(key, S)[s])``.
    At the papers' scale (100k steps) the step's Python overhead is the cost: compiled with
    ``torch.compile(fullgraph=True)`` (every aggregator's two-task solve is branch-free), a
    step of six methods from three starts takes ~0.2 ms on one CPU core after ~30 s of
    compilation (a few seconds once the compiler's cache is warm), against ~11 ms eager.

    Args:
        methods: ``M`` aggregators or names.
        starts: ``(S, 2)`` initial points (float64 keeps the runs in float64).
        steps, lr, optimizer, scale: as in :func:`toy_trajectory`.
        key: start ``s`` draws from ``split(key, S)[s]``; default ``key(0)``.
        record_every: keep the point and losses every this many steps (and after the last).
        compile: run the step through ``torch.compile``.

    Returns:
        ``{"trajectory": (M, S, R, 2), "losses": (M, S, R, 2), "steps": (R,)}``: the points
        and losses at the recorded ``steps`` (``0, record_every, …`` and ``steps``); and the
        wall times (floats) ``"first_step_seconds"`` (with the compilation) and ``"seconds"``.
    """
    x = torch.as_tensor(starts)
    if x.dim() != 2 or x.shape[-1] != 2:
        raise ValueError(f"`starts` must be points of shape (S, 2); got {tuple(x.shape)}.")
    if not methods:
        raise ValueError("`methods` must name at least one aggregator; got none.")
    start_keys = random.split(random.key(0) if key is None else key, x.shape[0])
    return _run(methods, x, start_keys, steps=steps, lr=lr, optimizer=optimizer, scale=scale,
                record_every=record_every, compile=compile)


def _run(methods, starts: Tensor, start_keys: Tensor, *, steps: int, lr: float,
         optimizer: str, scale: float, record_every: int, compile: bool) -> dict[str, Tensor]:
    for name, value, low in (("steps", steps, 0), ("record_every", record_every, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an integer ≥ {low}; got {value!r}.")
    builders = {"adam": optim.adam, "sgd": optim.sgd}
    if optimizer not in builders:
        raise ValueError(f"`optimizer` must be one of {sorted(builders)}; got {optimizer!r}.")
    methods = [aggregators.get(m) if isinstance(m, str) else m for m in methods]
    dtype = torch.float64 if starts.dtype == torch.float64 else torch.float32
    num_starts = starts.shape[0]
    transform = builders[optimizer](lr)
    params = {"x": starts.to(dtype).expand(len(methods), num_starts, 2).clone()}
    opt_state = transform.init(params)
    agg_states = [
        tree.map(lambda t: t.expand(num_starts, *t.shape).clone(), m.init(2, dtype=dtype))
        for m in methods
    ]
    step_keys = random.split(start_keys, max(steps, 1))  # (S, steps, 2)

    def losses_twice(point: Tensor) -> tuple[Tensor, Tensor]:
        losses = toy_losses(point, scale=scale)
        return losses, losses

    jacobians = vmap(vmap(jacrev(losses_twice, has_aux=True)))  # over methods, then starts

    def step(params, opt_state, agg_states, keys):
        jacobian, losses = jacobians(params["x"])  # (M, S, tasks, 2), (M, S, tasks)
        directions, new_states = [], []
        for m, method in enumerate(methods):
            def update(grads, state, key, method=method):
                return method.update(grads, state, key=key)

            direction, state = vmap(update)(jacobian[m], agg_states[m], keys)
            directions.append(direction)
            new_states.append(state)
        updates, opt_state = transform.update({"x": torch.stack(directions)}, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, new_states, losses

    if compile:
        step = torch.compile(step, fullgraph=True, dynamic=False)
    recorded = [s for s in range(0, steps, record_every)] + [steps]
    points, values = [], []
    began = first = time.perf_counter()
    for i in range(steps):
        x = params["x"]
        params, opt_state, agg_states, losses = step(params, opt_state, agg_states,
                                                     step_keys[:, i])
        if i % record_every == 0:
            points.append(x)
            values.append(losses)
        if i == 0:
            first = time.perf_counter()
    points.append(params["x"])
    values.append(toy_losses(params["x"], scale=scale))
    return {"trajectory": torch.stack(points, 2).detach(),
            "losses": torch.stack(values, 2).detach(), "steps": torch.tensor(recorded),
            "first_step_seconds": first - began, "seconds": time.perf_counter() - began}
