"""The training loop of ``funcmtl train``: K vmapped members, logging, checkpoints, resume.

Everything random is a pure function of ``--seed``, the member and the step (:mod:`._state`),
so a checkpoint only holds the train state (and the early-stopping best state) and the step
count: a run stopped at step ``s`` and resumed replays exactly the same batches and keys, and
ends bit-identical to an uninterrupted run.

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

from funcmtl import checkpoint, distributed, functional, mtl, random
from funcmtl.experiment import _evaluate, _guard, _progress
from funcmtl.experiment._build import Setup, Splits, build, load_splits, resolve_device
from funcmtl.experiment._config import TrainConfig, check, to_json
from funcmtl.experiment._io import open_run_dir
from funcmtl.experiment._layout import Layout
from funcmtl.experiment._progress import Progress as _Progress
from funcmtl.experiment._signals import Interrupted, StopRequest
from funcmtl.experiment._state import epoch_order, initial_tree, steps_per_epoch, total_steps
from funcmtl.experiment._state import keys as run_keys

__all__ = ["Interrupted", "RunResult", "initial_tree", "steps_per_epoch", "total_steps", "train"]


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
    run_tree = initial_tree(config, setup, device, layout.members)
    start = 0
    run_dir = _open_on_main(config, ctx) if config.out is not None else None
    try:
        if config.out is not None and config.resume:
            run_tree, start = _resume(config, setup, device, layout)
            if run_dir is not None:
                run_dir.truncate_log(start)
        with StopRequest() as stop:
            return _run(config, setup, splits, layout, run_tree, start, steps_total, run_dir,
                        device, progress and ctx.is_main, stop)
    finally:
        if run_dir is not None:
            run_dir.close()


def _resume(config: TrainConfig, setup, device, layout: Layout) -> tuple[dict, int]:
    """Every rank reads the whole ensemble from the checkpoint and keeps its shard."""
    full = initial_tree(config, setup, device)
    full, meta = checkpoint.load(config.out / checkpoint.CHECKPOINT, full)
    run_tree = {
        "state": distributed.take_shard(full["state"], layout.members),
        "best": distributed.take_shard(full["best"], layout.members) if full["best"] else {},
        "step": full["step"],
    }
    return run_tree, int(meta["step"])


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


def _run(config, setup, splits, layout, run_tree, start, steps_total, run_dir, device,
         progress, stop: StopRequest):
    tasks = setup.tasks
    apply = functional.Apply(setup.module)
    vstep = layout.vmap_step(mtl.make_step(
        setup.model,
        tasks,
        setup.optimizer,
        setup.aggregator,
        setup.weighting,
        path=config.path,
        regularizer=setup.regularizer,
        data_parallel=layout.data_parallel,
    ))
    logging = config.out is not None
    train_x = splits.train.inputs.to(device)
    train_y = {n: y.to(device) for n, y in splits.train.targets.items()}
    n, per_epoch = len(splits.train), steps_per_epoch(config, len(splits.train))
    eval_every = config.eval_every or per_epoch
    member_ids = torch.tensor(list(layout.members))
    step_key = run_keys(config)["step"]
    state, best = run_tree["state"], run_tree["best"]
    completed, skipped, stopped_early = start, 0, False
    saved = start if config.resume else None  # the step of the checkpoint on disk
    order_epoch, order = -1, None
    bar = _Progress(steps_total, start, progress)

    def exhausted() -> bool:
        """Early stopping: every member (on every rank) ran out of patience."""
        if not best:
            return False
        waiting = int((best["bad"] < config.patience).sum())
        return layout.count(waiting) == 0

    def save() -> None:
        nonlocal saved
        if not logging or saved == completed:  # (the last step may be a periodic save too)
            return
        full = {"state": layout.gather(state), "best": layout.gather(best) if best else {},
                "step": torch.tensor(completed)}
        if run_dir is not None:
            checkpoint.save(run_dir.checkpoint_path, full, metadata={"step": completed})
        saved = completed

    def on_disk() -> str:
        if not logging:
            return "."
        if saved is None:
            return f"; no checkpoint was written to {config.out}."
        return f"; the last checkpoint in {config.out} (step {saved}) is intact."

    stopped_early = exhausted()  # resumed from a checkpoint written when the run stopped
    signum = None
    try:
        for step in range(start, steps_total):
            if stopped_early:
                break
            epoch, position = divmod(step, per_epoch)
            if epoch != order_epoch:
                order = epoch_order(config, layout.members, epoch, n).to(device)
                order_epoch = epoch
            rows = order[:, position * config.batch_size : (position + 1) * config.batch_size]
            batch = (train_x[rows], {name: y[rows] for name, y in train_y.items()})
            keys = random.fold_in(random.fold_in(step_key, step), member_ids).to(device)
            new_state, metrics = vstep(state, batch, keys)
            done = step + 1
            saving = done % config.checkpoint_every == 0 or done == steps_total
            update = (apply, tasks, new_state, batch)
            finite = torch.isfinite(metrics["losses"]).all(-1)
            finite = finite & _guard.state_finite(new_state, len(layout.members)).to(finite)
            # The loss at the new weights costs a forward pass: checked before a save and at
            # every step with --skip-nonfinite (otherwise the next step's loss shows it).
            checked = config.skip_nonfinite or saving
            if checked:
                finite = finite & _guard.loss_finite(*update)
            finite = finite.cpu()  # one transfer for the step's checks
            bad, signum = layout.agree(int((~finite).sum()), stop.signum)
            if signum is not None:
                stop.agreed(signum)
            if signum is not None and not checked:  # about to be saved: check it too
                finite &= _guard.loss_finite(*update).cpu()
                bad = layout.count(int((~finite).sum()))
            if bad > 0:
                if not config.skip_nonfinite:
                    where = _guard.describe(finite, metrics["losses"], tasks,
                                            layout.members.start)
                    raise ValueError(
                        f"non-finite loss or update at step {done} ({where}); lower --lr, add "
                        f"--clip-norm, check the data, or pass --skip-nonfinite" + on_disk()
                    )
                skipped += 1
                new_state = _guard.where_members(finite, new_state, state)
            new_best = best
            if logging and (done % config.log_every == 0 or done == steps_total):
                _progress.log_train(run_dir, layout, done, metrics, tasks)
            if done % eval_every == 0 or done == steps_total:
                val = _evaluate.evaluate(apply, new_state.params, new_state.buffers,
                                         splits.val, device)
                if logging:
                    entry = _evaluate.record(done, "val", layout.gather(val), tasks)
                    if run_dir is not None:
                        run_dir.log(entry)
                if best:
                    new_best = _update_best(best, new_state, val["loss"])
            state, best, completed = new_state, new_best, done
            bar.update(done, float(metrics["loss"].double().mean()))
            stopped_early = exhausted()
            if signum is not None:
                break
            if done % config.checkpoint_every == 0 or stopped_early:
                save()
        save()
    except KeyboardInterrupt:  # raised by code, not by a signal: safe in one process only
        if layout.ctx.world_size > 1:
            raise
        bar.close()
        save()
        signum = stop.signum or signal.SIGINT
    except distributed.DistributedError as error:
        bar.close()
        raise distributed.DistributedError(str(error) + on_disk()) from None
    finally:  # any error: give the terminal back (rich hides the cursor while the bar runs)
        bar.close()
    if signum is not None and completed < steps_total:  # (a stop at the last step: done)
        name = StopRequest.name_of(signum)
        raise Interrupted(
            f"interrupted after step {completed} ({name})"
            + (f"; checkpoint saved in {config.out}: continue with --out {config.out} --resume"
               if logging else " (no --out: nothing saved)"), signum
        )
    final = state
    if best:
        final = state._replace(params=best["params"], buffers=best["buffers"])
    val = _evaluate.evaluate(apply, final.params, final.buffers, splits.val, device)
    test = _evaluate.evaluate(apply, final.params, final.buffers, splits.test, device)
    return RunResult(
        config, setup, splits, layout.gather(final), completed, stopped_early,
        skipped,
        layout.gather(val), layout.gather(test), main=layout.ctx.is_main,
    )


def _update_best(best: dict[str, Any], state: mtl.MTLState, val_loss: Tensor) -> dict[str, Any]:
    """Early stopping: keep each member's parameters of its lowest validation loss."""
    val_loss = val_loss.to(best["loss"])
    improved = val_loss < best["loss"]
    return {
        "params": _guard.where_members(improved, state.params, best["params"]),
        "buffers": _guard.where_members(improved, state.buffers, best["buffers"]),
        "loss": torch.where(improved, val_loss, best["loss"]),
        "bad": torch.where(improved, torch.zeros_like(best["bad"]), best["bad"] + 1),
    }
