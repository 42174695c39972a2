"""``fit``: the eager driver around a pure step — schedule, keys, evaluation, early stopping.

Randomness is a pure function of ``key``, the member and the step. A single model: with
``k_data, k_step = split(key)``, epoch ``e`` is shuffled with ``fold_in(k_data, e)`` and step
``s`` gets ``fold_in(k_step, s)``. An ensemble (``members``): member ``k`` is the single-model
run with the key ``split(key, K)[k]`` — its own step keys and, with ``shuffle="member"``, its
own data order — the same rule by which :func:`funcmtl.ensemble.init_members` initialises it.
``split`` is prefix-stable (``split(key, K)[k]`` does not depend on ``K``), so member ``k`` is
the same in a run of any size and on whichever rank trains it. A run stopped at step ``s``
and continued from its :class:`FitState` sees exactly the batches and keys of an
uninterrupted one.

What a caller adds to the loop (logging, checkpoints, a progress bar, a stop on a signal)
goes in :class:`Callback` objects; what it adds to a step (refusing non-finite updates) wraps
the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from funcmtl import data as data_lib
from funcmtl import random, tree
from funcmtl._means import MetricMeans
from funcmtl.train._early_stopping import check_mode, worst
from funcmtl.train._fit_state import FitState, device_of, fit_state, update_best
from funcmtl.train._state import Metrics, PyTree, Step

SHUFFLES = ("shared", "member")


def schedule(num_examples: int, batch_size: int, *, epochs: int | None = None,
             steps: int | None = None) -> tuple[int, int]:
    """``(steps per epoch, steps of the run)`` of :func:`fit` (the last batch of an epoch may
    be smaller): ``steps`` if given, else ``epochs`` epochs."""
    per_epoch = math.ceil(num_examples / batch_size)
    return per_epoch, steps if steps is not None else epochs * per_epoch


class Callback:
    """Hooks of :func:`fit`, called in this order at every step; override what you need."""

    def after_step(self, run: FitState, metrics: Metrics) -> None:
        """Right after the step (``run.step`` counts it): logging, a progress bar."""

    def after_eval(self, run: FitState, values: dict[str, Any]) -> None:
        """After an evaluation and the early-stopping update, with ``evaluate_fn``'s values."""

    def stop_requested(self) -> bool:
        """Whether the run must stop after this step (e.g. on a signal)."""
        return False

    def end_of_step(self, run: FitState, last: bool) -> None:
        """The step is complete; ``last`` when the run ends after it (the schedule is done,
        every member ran out of patience, or a stop was requested): checkpoints."""


class FitResult(NamedTuple):
    state: Any  # the last train state
    best_state: Any  # each member's best parameters and buffers (FitState.best_state)
    history: list[dict[str, float]]  # one row per evaluation: train means and eval metrics
    run: FitState  # to continue training with fit
    stopped_early: bool  # every member ran out of patience


def fit(
    step: Step,
    state: Any,
    train_data: PyTree,
    *,
    key: torch.Tensor,
    batch_size: int,
    epochs: int | None = None,
    steps: int | None = None,
    members: int | range | None = None,
    shuffle: str = "shared",
    member_indices: torch.Tensor | None = None,
    evaluate_fn: Callable[[Any], dict[str, Any]] | None = None,
    eval_every: int | None = None,
    monitor: str = "loss",
    mode: str = "min",
    patience: int | None = None,
    min_delta: float = 0.0,
    keep_best: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    callbacks: Sequence[Callback] = (),
    count_over_ranks: Callable[[int], int] | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs (or ``steps`` steps), with early stopping on ``monitor``.

    See the module docstring for how the keys are derived.

    Args:
        step: ``step(state, batch, key)``, e.g. from :func:`make_step` (or
            :func:`funcmtl.ensemble.make_step` with ``members``; with ``shuffle="member"`` or
            ``member_indices`` the batch has a leading member axis: ``per_member_batch``).
        state: the initial train state (stacked for an ensemble; not modified), or the
            :class:`FitState` of a run to continue.
        train_data: pytree with a leading example axis, e.g. ``(x, y)``.
        epochs, steps: the length of the run, one of the two (``steps`` may end mid-epoch).
        members: train a stacked ensemble of this many members, or of the members of these
            global indices (a rank's shard, ``fm.distributed.shard``).
        shuffle: ``"shared"`` (all members see the same data order) or ``"member"`` (each its
            own, as in a deep ensemble trained member by member).
        member_indices: ``(K, n)`` per-member example indices (bagging, see
            :func:`funcmtl.data.bootstrap`).
        evaluate_fn: ``state -> {name: value}``, run every ``eval_every`` steps (default:
            every epoch) and after the last step. A value may be a float or a ``(K,)`` tensor:
            then each member early-stops on its own value.
        monitor: the key of ``evaluate_fn``'s result (or a train metric) to early-stop on.
        mode, min_delta: ``"min"`` or ``"max"``; an improvement must beat the best by more
            than ``min_delta``.
        patience: evaluations without improvement before a member stops — it is then left
            as it is, as a run of its own would end — and the run stops when every member has;
            ``None`` never stops.
        keep_best: keep each member's best parameters (``best_state``).
        log: called with each evaluation's row (train metrics averaged over the batches since
            the last evaluation and over members; a task metric skips the batches where it is
            ``NaN``, i.e. not measured). A run continued from a :class:`FitState` averages from
            where it continued: only the state is carried, not those running means.
        callbacks: :class:`Callback` hooks.
        count_over_ranks: sums an integer over the processes that train the other members of
            the same ensemble (under torchrun), so that all stop together; identity default.
    """
    random.check_key(key)
    if shuffle not in SHUFFLES:
        raise ValueError(f"`shuffle` must be one of {SHUFFLES}; got {shuffle!r}.")
    if (epochs is None) == (steps is None):
        raise ValueError(f"pass one of `epochs` and `steps`; got epochs={epochs!r}, "
                         f"steps={steps!r}.")
    for name, value in (("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    ids = range(members) if isinstance(members, int) else members
    n = data_lib.num_examples(train_data)
    if member_indices is not None:
        n = member_indices.shape[-1]
    per_epoch, total = schedule(n, batch_size, epochs=epochs, steps=steps)
    eval_every = eval_every or per_epoch
    data_keys, step_keys = _keys(key, ids, shuffle)

    if isinstance(state, FitState):
        run = state
        check_mode(mode)
        made = "max" if mode == "min" else "min"
        if bool((run.best_value == worst(made)).any()):  # a best still at the other's start
            raise ValueError(f"this FitState was made with mode={made!r}; got mode={mode!r}.")
    else:
        run = fit_state(state, members=None if ids is None else len(ids), keep_best=keep_best,
                        mode=mode)
    # Copies: a donating step may overwrite the buffers of the states it is given.
    run = run._replace(state=tree.map(torch.clone, run.state))
    start = int(run.step.reshape(-1)[0]) if run.step.numel() else 0

    def exhausted() -> bool:
        if patience is None:
            return False
        waiting = int((run.waiting < patience).sum())
        return (count_over_ranks(waiting) if count_over_ranks else waiting) == 0

    history: list[dict[str, float]] = []
    means = MetricMeans()
    device = device_of(run.state)
    early = start > 0 and exhausted()  # continued from a run that had stopped early
    done, epoch_batches = start, None
    # (read at evaluations only: the selection copies the state, no need while all train)
    stopped_members = ids is not None and patience is not None and bool(
        (run.waiting >= patience).any())
    while done < total and not early:
        epoch, position = divmod(done, per_epoch)
        if epoch_batches is None or position == 0:
            epoch_batches = data_lib.batches(train_data, batch_size, key=data_keys, epoch=epoch,
                                             member_indices=member_indices, start=position)
        keys = random.fold_in(step_keys, done).to(device)
        new_state, metrics = step(run.state, next(epoch_batches), keys)
        done += 1
        if stopped_members:  # a member out of patience stays as it stopped
            new_state = tree.select(run.waiting < patience, new_state, run.state)
        run = run._replace(state=new_state, step=torch.full_like(run.step, done))
        means.add(metrics)
        for callback in callbacks:
            callback.after_step(run, metrics)
        if done % eval_every == 0 or done == total:
            values = evaluate_fn(run.state) if evaluate_fn is not None else {}
            row = _row((done - 1) // per_epoch, done, means, values)
            means_before, means = means, MetricMeans()
            value = _monitored(monitor, values, row, means_before)
            run = update_best(run, value, mode, min_delta, patience)
            early = exhausted()
            stopped_members = ids is not None and patience is not None and bool(
                (run.waiting >= patience).any())
            if log is not None:
                log(row)
            history.append(row)
            for callback in callbacks:
                callback.after_eval(run, values)
        requested = any(callback.stop_requested() for callback in callbacks)
        last = done == total or early or requested
        for callback in callbacks:
            callback.end_of_step(run, last)
        if requested:
            break
    return FitResult(run.state, run.best_state, history, run, early)


def _keys(key: torch.Tensor, ids: range | None, shuffle: str):
    """``(data keys, step keys)``: ``(2,)`` each for one model; ``(K, 2)`` step keys for an
    ensemble, and data keys ``(K, 2)`` with one order per member or ``(2,)`` shared."""
    if ids is None:
        data_key, step_key = random.split(key)
        return data_key, step_key
    if not isinstance(ids, range) or len(ids) == 0 or ids.step != 1 or ids.start < 0:
        raise ValueError(f"`members` must be a positive int or a non-empty range of member "
                         f"indices; got {ids!r}.")
    member_keys = random.split(random.split(key, ids.stop)[ids.start : ids.stop])  # (K, 2, 2)
    data_keys = member_keys[:, 0] if shuffle == "member" else random.split(key)[0]
    return data_keys, member_keys[:, 1]


def _row(epoch: int, step: int, means: MetricMeans, values: dict[str, Any]) -> dict[str, float]:
    row = {"epoch": float(epoch), "step": float(step)}
    row.update({f"train_{n}": v for n, v in means.result().items()})
    for name, value in values.items():
        row[name] = float(torch.as_tensor(value).double().mean()) if torch.is_tensor(value) \
            else float(value)
    return row


def _monitored(monitor: str, values: dict[str, Any], row: dict[str, float],
               means: MetricMeans) -> torch.Tensor:
    """The monitored value: ``evaluate_fn``'s, else the train metric's mean since the last
    evaluation (per member for an ensemble)."""
    if monitor in values:
        return torch.as_tensor(values[monitor]).detach().to(torch.float64)
    if f"train_{monitor}" in row:
        return means.per_member(monitor).to(torch.float64)
    raise ValueError(
        f"`monitor` must name a logged value; got {monitor!r}, available {sorted(row)}."
    )
