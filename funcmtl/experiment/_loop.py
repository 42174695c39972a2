"""The training loop of ``funcmtl train``: K vmapped members, logging, checkpoints, resume.

Everything random is a pure function of ``--seed`` and the step number: member ``k``'s
initialisation key is ``fold_in(init_key, k)``, its data order in epoch ``e`` is a permutation
from ``fold_in(fold_in(data_key, k), e)`` and its step key ``fold_in(fold_in(step_key, s), k)``.
A checkpoint therefore only holds the train state (and the early-stopping best state) and
the step count: a run stopped at step ``s`` and resumed replays exactly the same batches and
keys, and ends bit-identical to an uninterrupted run.

Under ``torchrun`` (:mod:`funcmtl.distributed`) the same loop runs on every rank: with
``members > 1`` each rank trains its shard of the members (keys depend on the global member
index, so the result equals the single-process run) and the per-member metrics and the
checkpoint are gathered; with one member every rank trains the same model data-parallel,
the per-task Jacobian all-reduced before aggregation. Rank 0 writes the run directory.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import torch
from torch import Tensor

from funcmtl import checkpoint, distributed, functional, mtl, random, tree
from funcmtl.experiment import _evaluate
from funcmtl.experiment._build import Setup, Splits, build, load_splits, resolve_device
from funcmtl.experiment._config import TrainConfig, check, to_json
from funcmtl.experiment._io import open_run_dir


class Interrupted(Exception):
    """Ctrl-C during training; the run directory holds a checkpoint to ``--resume`` from."""


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


def steps_per_epoch(config: TrainConfig, num_train: int) -> int:
    return math.ceil(num_train / config.batch_size)


def total_steps(config: TrainConfig, num_train: int) -> int:
    if config.steps is not None:
        return config.steps
    return config.epochs * steps_per_epoch(config, num_train)


def _keys(config: TrainConfig) -> dict[str, Tensor]:
    init_key, data_key, step_key = random.split(random.key(config.seed), 3)
    return {"init": init_key, "data": data_key, "step": step_key}


def initial_tree(
    config: TrainConfig, setup: Setup, device: torch.device, members: range | None = None
) -> dict[str, Any]:
    """The checkpointed tree at step 0: ``{"state", "best", "step"}``, for ``members`` (default:
    all ``config.members``; a rank's shard under torchrun)."""
    keys = _keys(config)
    members = range(config.members) if members is None else members
    states = []
    for k in members:
        params, buffers = functional.init(
            setup.module, random.fold_in(keys["init"], k), device=device
        )
        states.append(
            mtl.init_state(
                params, buffers, setup.tasks, setup.optimizer, setup.aggregator, setup.weighting
            )
        )
    state = tree.stack(states)
    best: dict[str, Any] = {}
    if config.patience is not None:
        best = {
            "params": tree.map(torch.clone, state.params),
            "buffers": tree.map(torch.clone, state.buffers),
            "loss": torch.full((len(members),), math.inf, dtype=torch.float64, device=device),
            "bad": torch.zeros(len(members), dtype=torch.int64, device=device),
        }
    return {"state": state, "best": best, "step": torch.zeros((), dtype=torch.int64)}


def _epoch_order(config: TrainConfig, members: range, epoch: int, n: int) -> Tensor:
    """``(len(members), n)``: each member's example order in ``epoch``."""
    data_key = _keys(config)["data"]
    return torch.stack(
        [
            random.permutation(random.fold_in(random.fold_in(data_key, k), epoch), n)
            for k in members
        ]
    )


def _conflict(cosine: Tensor) -> dict[str, float] | None:
    """Summary of the members' task-gradient cosine matrices ``(K, T, T)``."""
    num_tasks = cosine.shape[-1]
    if num_tasks < 2:
        return None
    off = ~torch.eye(num_tasks, dtype=torch.bool, device=cosine.device)
    pairs = cosine[:, off]
    return {
        "min_cosine": float(pairs.amin(-1).double().mean()),
        "negative_fraction": float((pairs < 0).double().mean()),
    }


class _Progress:
    """One self-overwriting line on a terminal; a line every 10% otherwise."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.start, self.enabled = total, start, enabled
        self.tty = sys.stderr.isatty()
        self.began = time.perf_counter()
        self.shown = -1.0
        self.decile = start * 10 // max(total, 1)

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (step - self.start) / max(now - self.began, 1e-9)
        width = 30
        filled = width * step // max(self.total, 1)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} "
            f"loss {loss:.4f} {rate:.0f} steps/s"
        )
        if self.tty:
            if now - self.shown > 0.1 or step == self.total:
                print("\r" + line, end="", file=sys.stderr, flush=True)
                self.shown = now
        elif step * 10 // max(self.total, 1) > self.decile or step == self.total:
            self.decile = step * 10 // max(self.total, 1)
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


def _where_members(mask: Tensor, new: Any, old: Any) -> Any:
    """Member-wise ``new if mask[k] else old`` over stacked trees."""

    def pick(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(mask.reshape(-1, *([1] * (a.dim() - 1))).to(a.device), a, b)

    return tree.map(pick, new, old)


def _first_nonfinite(losses: Tensor, tasks) -> str:
    """``member k, tasks [...]`` for the first member whose losses are not finite."""
    bad = ~torch.isfinite(losses)
    member = int(bad.any(-1).nonzero()[0])
    names = [t.name for t, b in zip(tasks, bad[member].tolist(), strict=True) if b]
    return f"member {member}, task(s) {names}"


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How a run spreads over the ranks of ``ctx``: which members this rank trains, and
    whether the ranks share one model data-parallel."""

    ctx: distributed.Context
    members: range
    data_parallel: Any  # funcmtl.distributed.DataParallel or None
    num_members: int

    @classmethod
    def of(cls, config: TrainConfig, ctx: distributed.Context, num_train: int) -> _Layout:
        world = ctx.world_size
        if world == 1:
            return cls(ctx, range(config.members), None, config.members)
        if config.members == 1:
            last = num_train % config.batch_size
            if 0 < last < world:
                raise ValueError(
                    f"data-parallel training over {world} ranks needs every batch to have at "
                    f"least {world} examples; the last batch of each epoch has {last}: pick "
                    "another --batch-size."
                )
            return cls(ctx, range(1), distributed.data_parallel(ctx), 1)
        if config.members < world:
            raise ValueError(
                f"--members {config.members} cannot be sharded over {world} ranks: use "
                f"--members >= {world} (an ensemble) or --members 1 (data parallel)."
            )
        return cls(ctx, distributed.shard(config.members, ctx.rank, world), None,
                   config.members)

    def gather(self, stacked: Any) -> Any:
        """The values of all members from each rank's shard (identity without sharding)."""
        if self.data_parallel is not None or self.ctx.world_size == 1:
            return stacked
        return distributed.all_gather_members(stacked, self.ctx, self.num_members)

    def count(self, value: int) -> int:
        """``value`` summed over the ranks that hold different members."""
        if self.data_parallel is not None or self.ctx.world_size == 1:
            return value
        return int(distributed.all_reduce_sum(torch.tensor([value]), self.ctx)[0])


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
    world without torchrun). Raises :class:`Interrupted` on Ctrl-C after saving a checkpoint.
    """
    check(config)
    device = resolve_device(config.device)
    ctx = distributed.init(device=device) if ctx is None else ctx
    splits = load_splits(config) if splits is None else splits
    layout = _Layout.of(config, ctx, len(splits.train))
    steps_total = total_steps(config, len(splits.train))
    setup = build(config, splits, steps_total, aggregator=aggregator, weighting=weighting)
    run_tree = initial_tree(config, setup, device, layout.members)
    start, run_dir = 0, None
    if config.out is not None:
        run_dir = _open_on_main(config, ctx)
        if config.resume:  # every rank reads the whole ensemble and keeps its shard
            full = initial_tree(config, setup, device)
            full, meta = checkpoint.load(config.out / checkpoint.CHECKPOINT, full)
            run_tree = {
                "state": distributed.take_shard(full["state"], layout.members),
                "best": distributed.take_shard(full["best"], layout.members)
                if full["best"] else {},
                "step": full["step"],
            }
            start = int(meta["step"])
            if run_dir is not None:
                run_dir.truncate_log(start)
    try:
        return _run(config, setup, splits, layout, run_tree, start, steps_total, run_dir,
                    device, progress and ctx.is_main)
    finally:
        if run_dir is not None:
            run_dir.close()


def _open_on_main(config: TrainConfig, ctx: distributed.Context):
    """Rank 0 opens (and checks) the run directory; the others learn whether it could."""
    run_dir, problem = None, ""
    if ctx.is_main:
        try:
            run_dir = open_run_dir(config.out, to_json(config), resume=config.resume,
                                   tensorboard=config.tensorboard)
        except ValueError as error:
            problem = str(error)
    if ctx.world_size > 1:
        message = [problem]
        torch.distributed.broadcast_object_list(message, src=0, group=ctx.group)
        problem = message[0]
    if problem:
        raise ValueError(problem)
    return run_dir


def _run(config, setup, splits, layout, run_tree, start, steps_total, run_dir, device,
         progress):
    tasks = setup.tasks
    apply = functional.Apply(setup.module)
    step_fn = mtl.make_step(
        setup.model,
        tasks,
        setup.optimizer,
        setup.aggregator,
        setup.weighting,
        path=config.path,
        regularizer=setup.regularizer,
        data_parallel=layout.data_parallel,
    )
    if layout.data_parallel is None:
        vstep = torch.func.vmap(step_fn, in_dims=(0, 0, 0))
    else:  # a data-parallel step communicates: one member, run eagerly

        def vstep(state, batch, keys):
            first = lambda x: x[0]  # noqa: E731
            new, metrics = step_fn(tree.map(first, state), tree.map(first, batch), keys[0])
            return tree.map(lambda x: x[None], new), tree.map(lambda x: x[None], metrics)

    logging = config.out is not None
    train_x = splits.train.inputs.to(device)
    train_y = {n: y.to(device) for n, y in splits.train.targets.items()}
    n, per_epoch = len(splits.train), steps_per_epoch(config, len(splits.train))
    eval_every = config.eval_every or per_epoch
    member_ids = torch.tensor(list(layout.members))
    step_key = _keys(config)["step"]
    state, best = run_tree["state"], run_tree["best"]
    completed, skipped, stopped_early = start, 0, False
    order_epoch, order = -1, None
    bar = _Progress(steps_total, start, progress)

    def exhausted() -> bool:
        """Early stopping: every member (on every rank) ran out of patience."""
        if not best:
            return False
        waiting = int((best["bad"] < config.patience).sum())
        return layout.count(waiting) == 0

    def save() -> None:
        if not logging:
            return
        full = {"state": layout.gather(state), "best": layout.gather(best) if best else {},
                "step": torch.tensor(completed)}
        if run_dir is not None:
            checkpoint.save(run_dir.checkpoint_path, full, metadata={"step": completed})

    stopped_early = exhausted()  # resumed from a checkpoint written when the run stopped
    try:
        for step in range(start, steps_total):
            if stopped_early:
                break
            epoch, position = divmod(step, per_epoch)
            if epoch != order_epoch:
                order = _epoch_order(config, layout.members, epoch, n).to(device)
                order_epoch = epoch
            rows = order[:, position * config.batch_size : (position + 1) * config.batch_size]
            batch = (train_x[rows], {name: y[rows] for name, y in train_y.items()})
            keys = random.fold_in(random.fold_in(step_key, step), member_ids).to(device)
            new_state, metrics = vstep(state, batch, keys)
            finite = torch.isfinite(metrics["losses"]).all(-1)
            if layout.count(int((~finite).sum())) > 0:
                where = (_first_nonfinite(metrics["losses"], tasks) if not bool(finite.all())
                         else "a member on another rank")
                if not config.skip_nonfinite:
                    raise ValueError(
                        f"non-finite loss at step {step + 1} ({where}); lower --lr, add "
                        f"--clip-norm, check the data, or pass --skip-nonfinite"
                        + (f"; the last checkpoint in {config.out} is intact." if logging
                           else ".")
                    )
                skipped += 1
                new_state = _where_members(finite, new_state, state)
            done = step + 1
            new_best = best
            if logging and (done % config.log_every == 0 or done == steps_total):
                values = {k: v for k, v in metrics.items() if "/" in k}
                values["loss"] = metrics["loss"]
                values.update({f"{t.name}/loss": metrics["losses"][:, i]
                               for i, t in enumerate(tasks)})
                values["cosine"] = metrics["cosine"]
                values = layout.gather(values)
                entry = _evaluate.record(done, "train", values, tasks)
                conflict = _conflict(values["cosine"])
                if conflict is not None:
                    entry["conflict"] = conflict
                if run_dir is not None:
                    run_dir.log(entry)
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
            if done % config.checkpoint_every == 0 or stopped_early:
                save()
        save()
    except KeyboardInterrupt:
        bar.close()
        save()
        raise Interrupted(
            f"interrupted after step {completed}"
            + (f"; checkpoint saved: continue with --out {config.out} --resume" if logging
               else " (no --out: nothing saved)")
        ) from None
    bar.close()
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
        "params": _where_members(improved, state.params, best["params"]),
        "buffers": _where_members(improved, state.buffers, best["buffers"]),
        "loss": torch.where(improved, val_loss, best["loss"]),
        "bad": torch.where(improved, torch.zeros_like(best["bad"]), best["bad"] + 1),
    }
