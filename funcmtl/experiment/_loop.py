"""``funcmtl train``: :func:`funcmtl.train.fit` over K vmapped multi-task members, with the
run's hooks — metrics.jsonl records, checkpoints, a progress bar — and its step wrapper,
which refuses non-finite steps and agrees with the other ranks on stopping.

Everything random is a pure function of ``--seed``, the member and the step (:mod:`._state`),
so a checkpoint only holds the :class:`~funcmtl.train.FitState` (train state, early-stopping
record, step count): a run stopped at step ``s`` and resumed replays exactly the same
batches and keys, and ends bit-identical to an uninterrupted run.

Under ``torchrun`` (:mod:`funcmtl.distributed`) the same loop runs on every rank: with
``members > 1`` each rank trains its shard of the members (keys depend on the global member
index, so the result equals the single-process run) and the per-member metrics and the
checkpoint are gathered; with one member every rank trains the same model data-parallel,
the per-task Jacobian all-reduced before aggregation. Rank 0 writes the run directory.

SIGINT and SIGTERM stop every rank after the same step (:mod:`._signals`), which is then
checkpointed; an update that is not finite is refused or skipped (:mod:`._guard`).
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import torch
from torch import Tensor

from funcmtl import checkpoint, distributed, mtl
from funcmtl import train as train_lib
from funcmtl._functional import Apply
from funcmtl.experiment import _evaluate, _guard, _progress
from funcmtl.experiment._build import Setup, Splits, build, load_splits, resolve_device
from funcmtl.experiment._config import TrainConfig, check, to_json
from funcmtl.experiment._io import open_run_dir
from funcmtl.experiment._layout import Layout
from funcmtl.experiment._progress import Progress as _Progress
from funcmtl.experiment._signals import Interrupted, StopRequest
from funcmtl.experiment._state import initial_tree, total_steps
from funcmtl.experiment._state import keys as run_keys

__all__ = ["Interrupted", "RunResult", "train"]


@dataclasses.dataclass
class RunResult:
    """What a finished run hands back."""

    config: TrainConfig
    setup: Setup
    splits: Splits
    state: mtl.MTLState  # stacked over members; the best state when early stopping
    steps: int
    stopped_early: bool
    skipped_steps: int
    val: dict[str, Tensor]
    test: dict[str, Tensor]
    main: bool = True  # False on the ranks > 0 of a distributed run: they do not report


def train(
    config: TrainConfig,
    *,
    splits: Splits | None = None,
    progress: bool = True,
    aggregator: Any = None,
    weighting: Any = None,
    ctx: distributed.Context | None = None,
) -> RunResult:
    """Run ``config`` to the end (or until early stopping) and evaluate on val and test.

    With ``config.out``, the run directory gets config.json, metrics.jsonl and checkpoints
    (the caller writes summary.json from the result); ``config.resume`` continues it.
    ``aggregator`` / ``weighting`` objects (your own
    :class:`~funcmtl.aggregators.Aggregator`, say) replace the ones ``config.method`` names.
    ``ctx`` is the process group (default: :func:`funcmtl.distributed.init`, a 1-process
    world without torchrun). Raises :class:`Interrupted` on SIGINT (Ctrl-C) or SIGTERM after
    saving a checkpoint at a step all ranks agree on.
    """
    check(config)
    device = resolve_device(config.device)
    ctx = distributed.init(device=device) if ctx is None else ctx
    splits = load_splits(config) if splits is None else splits
    layout = Layout.of(config, ctx, len(splits.train))
    steps_total = total_steps(config, len(splits.train))
    setup = build(config, splits, steps_total, aggregator=aggregator, weighting=weighting)
    run_dir = _open_on_main(config, ctx) if config.out is not None else None
    try:
        if config.out is not None and config.resume:
            run, start, skipped = _resume(config, setup, device, layout)
            if run_dir is not None:
                run_dir.truncate_log(start)
        else:
            run, start, skipped = initial_tree(config, setup, device, layout.members), 0, 0
        with StopRequest() as stop:
            return _run(config, setup, splits, layout, (run, start, skipped), steps_total,
                        run_dir, device, progress and ctx.is_main, stop)
    finally:
        if run_dir is not None:
            run_dir.close()


def _resume(config: TrainConfig, setup, device, layout: Layout):
    """``(this rank's shard of the checkpointed run, its step, the steps skipped so far)``:
    every rank reads the whole ensemble from the checkpoint and keeps its shard."""
    full = initial_tree(config, setup, device)
    full, meta = checkpoint.load(config.out / checkpoint.CHECKPOINT, full)
    return (distributed.take_shard(full, layout.members), int(meta["step"]),
            int(meta.get("skipped", 0)))


def _open_on_main(config: TrainConfig, ctx: distributed.Context):
    """Rank 0 opens (and checks) the run directory; the others learn whether it could."""
    run_dir, problem = None, ""
    if ctx.is_main:
        try:
            run_dir = open_run_dir(config.out, to_json(config), resume=config.resume,
                                   tensorboard=config.tensorboard)
        except (ValueError, OSError) as error:  # the other ranks must not wait in the broadcast
            problem = str(error)
    if ctx.world_size > 1:
        message = [problem]
        torch.distributed.broadcast_object_list(message, src=0, group=ctx.group)
        problem = message[0]
    if problem:
        raise ValueError(problem)
    return run_dir


class _Checkpoints(train_lib.Callback):
    """Saves the run (gathered over the ranks) every ``checkpoint_every`` steps and at the end;
    knows what is on disk, for the error messages."""

    def __init__(self, config: TrainConfig, layout: Layout, run_dir, run: train_lib.FitState,
                 start: int, skipped) -> None:
        self.config, self.layout, self.run_dir, self.latest = config, layout, run_dir, run
        self.skipped = skipped  # () -> the steps skipped so far (kept for a resumed run)
        self.saved = start if config.resume else None  # the step of the checkpoint on disk

    def end_of_step(self, run: train_lib.FitState, last: bool) -> None:
        self.latest = run
        if last or _done(run) % self.config.checkpoint_every == 0:
            self.save()

    def save(self) -> None:
        done = _done(self.latest)
        if self.config.out is None or self.saved == done:
            return
        full = self.layout.gather(self.latest)
        if self.run_dir is not None:
            checkpoint.save(self.run_dir.checkpoint_path, full,
                            metadata={"step": done, "skipped": self.skipped()})
        self.saved = done

    def on_disk(self) -> str:
        if self.config.out is None:
            return "."
        if self.saved is None:
            return f"; no checkpoint was written to {self.config.out}."
        return f"; the last checkpoint in {self.config.out} (step {self.saved}) is intact."


class _Report(train_lib.Callback):
    """metrics.jsonl records (training every ``log_every`` steps, validation at every
    evaluation) and the progress bar (once the step is complete and saved)."""

    def __init__(self, config: TrainConfig, layout: Layout, run_dir, tasks, bar: _Progress,
                 steps_total: int) -> None:
        self.config, self.layout, self.run_dir, self.tasks = config, layout, run_dir, tasks
        self.bar, self.steps_total, self.loss = bar, steps_total, 0.0

    def after_step(self, run: train_lib.FitState, metrics: dict) -> None:
        done = _done(run)
        if self.config.out is not None and (
            done % self.config.log_every == 0 or done == self.steps_total
        ):
            _progress.log_train(self.run_dir, self.layout, done, metrics, self.tasks)
        self.loss = float(metrics["loss"].double().mean())

    def after_eval(self, run: train_lib.FitState, values: dict) -> None:
        if self.config.out is None:
            return
        entry = _evaluate.record(_done(run), "val", self.layout.gather(values), self.tasks)
        if self.run_dir is not None:
            self.run_dir.log(entry)

    def end_of_step(self, run: train_lib.FitState, last: bool) -> None:
        self.bar.update(_done(run), self.loss)


def _done(run: train_lib.FitState) -> int:
    return int(run.step.reshape(-1)[0])


def _run(config, setup, splits, layout, begin, steps_total, run_dir, device, progress,
         stop: StopRequest):
    run, start, skipped = begin
    tasks = setup.tasks
    apply = Apply(setup.module)
    vstep = layout.vmap_step(mtl.make_step(
        setup.model,
        tasks,
        setup.optimizer,
        setup.aggregator,
        setup.weighting,
        path=config.path,
        regularizer=setup.regularizer,
        reduction=layout.data_parallel or mtl.LOCAL,
    ))
    train_data = (splits.train.inputs.to(device),
                  {n: y.to(device) for n, y in splits.train.targets.items()})
    guarded = _guard.GuardedStep(
        vstep, apply, tasks, layout, stop, skip=config.skip_nonfinite, start=start,
        skipped=skipped,
        saves=lambda done: done % config.checkpoint_every == 0 or done == steps_total,
    )
    checkpoints = _Checkpoints(config, layout, run_dir, run, start, lambda: guarded.skipped)
    bar = _Progress(steps_total, start, progress)
    report = _Report(config, layout, run_dir, tasks, bar, steps_total)

    def validate(state: mtl.MTLState) -> dict[str, Tensor]:
        return _evaluate.evaluate(apply, state.params, state.buffers, splits.val, device)

    signum = None
    try:
        result = train_lib.fit(
            guarded, run, train_data, key=run_keys(config)["train"], batch_size=config.batch_size,
            steps=steps_total, members=layout.members, shuffle="member", evaluate_fn=validate,
            eval_every=config.eval_every or None, monitor="loss", patience=config.patience,
            keep_best=config.patience is not None, callbacks=[guarded, checkpoints, report],
            count_over_ranks=layout.count,
        )
        signum = guarded.signum
    except _guard.NonFinite as error:
        raise ValueError(str(error) + checkpoints.on_disk()) from None
    except KeyboardInterrupt:  # raised by code, not by a signal: safe in one process only
        if layout.ctx.world_size > 1:
            raise
        bar.close()
        checkpoints.save()
        signum = stop.signum or signal.SIGINT
        result = None
    except distributed.DistributedError as error:
        bar.close()
        raise distributed.DistributedError(str(error) + checkpoints.on_disk()) from None
    finally:  # any error: give the terminal back (rich hides the cursor while the bar runs)
        bar.close()
    completed = _done(checkpoints.latest)
    if signum is not None and completed < steps_total:  # (a stop at the last step: done)
        name = StopRequest.name_of(signum)
        raise Interrupted(
            f"interrupted after step {completed} ({name})"
            + (f"; checkpoint saved in {config.out}: continue with --out {config.out} --resume"
               if config.out is not None else " (no --out: nothing saved)"), signum
        )
    finished = checkpoints.latest  # (fit's result, or the last complete step on Ctrl-C)
    final = finished.best_state if config.patience is not None else finished.state
    val = _evaluate.evaluate(apply, final.params, final.buffers, splits.val, device)
    test = _evaluate.evaluate(apply, final.params, final.buffers, splits.test, device)
    return RunResult(
        config, setup, splits, layout.gather(final), completed,
        result is not None and result.stopped_early,
        guarded.skipped, layout.gather(val), layout.gather(test), main=layout.ctx.is_main,
    )
