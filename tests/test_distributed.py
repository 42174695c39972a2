"""funcmtl.distributed: two gloo processes on this machine against one process.

The workers are this file run as a script (``python tests/test_distributed.py SCENARIO
OUT``) with torchrun's environment variables set by hand; they save their results under
OUT and the tests compare them with the plain single-process functions.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from pathlib import Path

import pytest
import torch
from _ranks import Ranks
from torch import nn

import funcmtl as fm
from funcmtl import distributed

WORLD = 2
MEMBERS, ENSEMBLE_STEPS = 5, 6  # 5 members over 2 ranks: uneven shards (3 + 2)
TASKS = [
    fm.mtl.Task("digit", "classification", 4, mask_value=-1),  # ranks see different counts
    fm.mtl.Task("value", "regression", 1),
    fm.mtl.Task("flag", "binary", 1),
]
EXAMPLES, BATCH, EPOCHS = 55, 25, 3  # batches 25, 25, 5: uneven shards (13 + 12, 3 + 2)
MTL_RUNS = {  # name -> (path, aggregator)
    "exact_pcgrad": ("exact", "pcgrad"),
    "representation_pcgrad": ("representation", "pcgrad"),  # summed Gramians
    "representation_graddrop": ("representation", "graddrop"),  # gathered rows
}


# ---------------------------------------------------------------------------- the workloads


def ensemble_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def classification_data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def mtl_data() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(EXAMPLES, 6, generator=g, dtype=torch.float64)
    digit = torch.randint(0, 4, (EXAMPLES,), generator=g)
    digit[torch.rand(EXAMPLES, generator=g) < 0.3] = -1  # missing labels
    targets = {
        "digit": digit,
        "value": x[:, 2] + 0.1 * torch.randn(EXAMPLES, generator=g, dtype=torch.float64),
        "flag": (x[:, 3] > 0).double(),
    }
    return x, targets


def mtl_setup():
    module = fm.mtl.hard_sharing_mlp(6, (24, 16), TASKS)
    params, buffers = fm.init(module, fm.random.key(3), dtype=torch.float64)
    return fm.mtl.split_module(module), params, buffers


def train_ensemble(ctx: distributed.Context) -> dict:
    """A sharded ensemble: this rank's members only, gathered at the end."""
    module, optimizer = ensemble_net(), fm.optim.adam(1e-2)
    apply, _, _ = fm.functional(module)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    k_init, k_steps = fm.random.split(fm.random.key(7))
    members = distributed.shard(MEMBERS, ctx.rank, ctx.world_size)
    params, buffers = distributed.init_shard(module, k_init, MEMBERS, members)
    states = fm.ensemble.init_states(params, buffers, optimizer)
    member_keys = distributed.take_shard(fm.random.split(k_steps, MEMBERS), members)
    step = fm.ensemble.make_step(loss_fn, optimizer)
    data = classification_data()
    for s in range(ENSEMBLE_STEPS):
        keys = torch.func.vmap(fm.random.fold_in, in_dims=(0, None))(member_keys, s)
        states, _ = step(states, data, keys)
    full = distributed.all_gather_members(states, ctx, MEMBERS)
    scores = fm.ensemble.evaluate(
        apply, full.params, full.buffers, data, {"accuracy": fm.metrics.accuracy}
    )
    return {"params": full.params, "step": full.step, "scores": scores}


def train_mtl(ctx: distributed.Context, path: str, aggregator: str) -> dict:
    """``fit`` with a data-parallel MTL step: every rank gets the global batches."""
    split, params, buffers = mtl_setup()
    optimizer = fm.optim.adam(1e-2)
    state = fm.mtl.init_state(params, buffers, TASKS, optimizer, aggregator)
    dp = distributed.data_parallel(ctx)
    step = fm.mtl.make_step(split, TASKS, optimizer, aggregator, path=path, reduction=dp)
    result = fm.train.fit(
        step, state, mtl_data(), key=fm.random.key(11), batch_size=BATCH, epochs=EPOCHS
    )
    return {"params": result.state.params, "history": result.history}


def gramian_refusal(ctx: distributed.Context) -> str:
    split, _, _ = mtl_setup()
    try:
        fm.mtl.make_step(
            split, TASKS, fm.optim.sgd(0.1), "upgrad", path="gramian",
            reduction=distributed.data_parallel(ctx),
        )
    except ValueError as err:
        return str(err)
    return ""


def train_single_task(ctx: distributed.Context) -> dict:
    """The plain data-parallel step on one model (uneven shards: 40 = 20 + 20, then 15 + 15)."""
    module, optimizer = ensemble_net(), fm.optim.adam(1e-2)
    apply, _, _ = fm.functional(module)
    params, buffers = fm.init(module, fm.random.key(5), dtype=torch.float64)
    x, y = classification_data(70)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    step = distributed.make_step(loss_fn, optimizer, ctx)
    state = fm.train.init_state(params, buffers, optimizer)
    result = fm.train.fit(
        step, state, (x.double(), y), key=fm.random.key(2), batch_size=40, epochs=3
    )
    return {"params": result.state.params, "history": result.history}


def collectives(ctx: distributed.Context) -> dict:
    """Rank r contributes x = r + 1 (weight r + 1), a shared int and a flag True on rank 0."""
    x = torch.full((2,), float(ctx.rank + 1))
    flag = torch.tensor([ctx.rank == 0])
    distributed.barrier(ctx)
    return {
        "mean": distributed.all_reduce_mean(
            {"x": x, "n": torch.tensor([7])}, ctx, weight=float(ctx.rank + 1)
        ),
        "sum": distributed.all_reduce_sum({"x": x, "n": torch.tensor([7])}, ctx),
        "broadcast": distributed.broadcast({"x": x, "flag": flag}, ctx, src=ctx.world_size - 1),
        "gathered": distributed.all_gather_concat(flag, ctx, [1, 1]),
    }


def train_everything(ctx: distributed.Context) -> dict:
    results = {"ensemble": train_ensemble(ctx), "single_task": train_single_task(ctx)}
    results["collectives"] = collectives(ctx)
    for name, (path, aggregator) in MTL_RUNS.items():
        results[name] = train_mtl(ctx, path, aggregator)
    results["gramian_refusal"] = gramian_refusal(ctx)
    return results


# -------------------------------------------------------------- the single-process reference


@functools.lru_cache(maxsize=1)
def reference() -> dict:
    """The same training with the plain functions, in this process, on full batches."""
    module, optimizer = ensemble_net(), fm.optim.adam(1e-2)
    apply, _, _ = fm.functional(module)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    k_init, k_steps = fm.random.split(fm.random.key(7))
    params, buffers = fm.ensemble.init_members(module, k_init, MEMBERS)
    states = fm.ensemble.init_states(params, buffers, optimizer)
    member_keys = fm.random.split(k_steps, MEMBERS)
    step = fm.ensemble.make_step(loss_fn, optimizer)
    data = classification_data()
    for s in range(ENSEMBLE_STEPS):
        keys = torch.stack([fm.random.fold_in(k, s) for k in member_keys])
        states, _ = step(states, data, keys)
    scores = fm.ensemble.evaluate(
        apply, states.params, states.buffers, data, {"accuracy": fm.metrics.accuracy}
    )
    results = {"ensemble": {"params": states.params, "step": states.step, "scores": scores}}

    params, buffers = fm.init(module, fm.random.key(5), dtype=torch.float64)
    x, y = classification_data(70)
    state = fm.train.init_state(params, buffers, optimizer)
    result = fm.train.fit(
        fm.train.make_step(loss_fn, optimizer), state, (x.double(), y),
        key=fm.random.key(2), batch_size=40, epochs=3,
    )
    results["single_task"] = {"params": result.state.params, "history": result.history}

    for name, (path, aggregator) in MTL_RUNS.items():
        split, params, buffers = mtl_setup()
        state = fm.mtl.init_state(params, buffers, TASKS, optimizer, aggregator)
        step = fm.mtl.make_step(split, TASKS, optimizer, aggregator, path=path)
        result = fm.train.fit(
            step, state, mtl_data(), key=fm.random.key(11), batch_size=BATCH, epochs=EPOCHS
        )
        results[name] = {"params": result.state.params, "history": result.history}
    return results


# ---------------------------------------------------------------------------- the launcher


def launch(
    scenario: str, out: Path, *, wait_s: float, wait_for: tuple[int, ...] = (0, 1)
) -> tuple[list[int | None], float]:
    """Run ``scenario`` on WORLD processes; return their exit codes and the elapsed time.

    Waits up to ``wait_s`` seconds for the ranks ``wait_for``, then stops every process
    still running (its code is then ``None``): none is left behind, whatever happens. The
    ranks meet at a store this process holds on a port the kernel picked (see ``_ranks``).
    """
    started = time.monotonic()
    with Ranks([sys.executable, __file__, scenario, str(out)], out, world=WORLD) as ranks:
        codes = ranks.wait(wait_s, ranks=wait_for)
    return codes, time.monotonic() - started


def log_of(out: Path, rank: int) -> str:
    return (out / f"rank{rank}.log").read_text()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("train")
    codes, _ = launch("train", out, wait_s=300)  # a loaded machine is slow, not hung
    assert codes == [0] * WORLD, "\n".join(log_of(out, r) for r in range(WORLD))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def max_difference(a, b) -> float:
    pairs = zip(fm.tree.leaves(a), fm.tree.leaves(b), strict=True)
    return max(float((x.double() - y.double()).abs().max()) for x, y in pairs)


# ------------------------------------------------------------------------------- the tests


def test_sharded_ensemble_equals_the_single_process_ensemble(two_ranks):
    expected = reference()["ensemble"]
    for rank_results in two_ranks:
        got = rank_results["ensemble"]
        assert got["params"]["0.weight"].shape == (MEMBERS, 16, 6)
        assert max_difference(got["params"], expected["params"]) <= 1e-5
        assert torch.equal(got["step"], expected["step"])
        for name, value in expected["scores"].items():
            assert math.isclose(got["scores"][name], value, abs_tol=1e-5)


@pytest.mark.parametrize("run", list(MTL_RUNS))
def test_data_parallel_mtl_equals_full_batch_training(two_ranks, run):
    expected = reference()[run]
    for rank_results in two_ranks:
        got = rank_results[run]
        assert max_difference(got["params"], expected["params"]) <= 1e-5
        for got_row, row in zip(got["history"], expected["history"], strict=True):
            for name in ("train_loss", "train_digit/accuracy", "train_value/mse"):
                assert math.isclose(got_row[name], row[name], rel_tol=1e-6, abs_tol=1e-9)


def test_data_parallel_single_task_step_equals_full_batch_training(two_ranks):
    expected = reference()["single_task"]
    for rank_results in two_ranks:
        assert max_difference(rank_results["single_task"]["params"], expected["params"]) <= 1e-5


def test_every_rank_holds_the_identical_replica(two_ranks):
    first, second = two_ranks
    for run in ("ensemble", "single_task", *MTL_RUNS):
        assert max_difference(first[run]["params"], second[run]["params"]) == 0.0


def test_pytree_collectives_reduce_broadcast_and_gather(two_ranks):
    for rank_results in two_ranks:
        got = rank_results["collectives"]
        assert torch.allclose(got["mean"]["x"], torch.full((2,), 5 / 3))  # (1·1 + 2·2) / 3
        assert torch.equal(got["mean"]["n"], torch.tensor([7]))  # integers are left alone
        assert torch.equal(got["sum"]["x"], torch.full((2,), 3.0))
        assert torch.equal(got["sum"]["n"], torch.tensor([14]))
        assert torch.equal(got["broadcast"]["x"], torch.full((2,), 2.0))
        assert torch.equal(got["broadcast"]["flag"], torch.tensor([False]))
        assert torch.equal(got["gathered"], torch.tensor([True, False]))


def test_gramian_path_is_refused_under_data_parallelism(two_ranks):
    for rank_results in two_ranks:
        message = rank_results["gramian_refusal"]
        assert message.startswith("path='gramian' cannot run data-parallel")
        assert "path='exact'" in message and "\n" not in message


@pytest.mark.parametrize("failure", ["exit", "hang"])
def test_a_failed_rank_makes_the_other_fail_clearly_within_the_timeout(tmp_path, failure):
    # The hanging rank never ends by itself: only the survivor is awaited, then it is killed.
    wait_for = (0, 1) if failure == "exit" else (0,)
    codes, elapsed = launch(failure, tmp_path, wait_s=40, wait_for=wait_for)
    survivor, failed = log_of(tmp_path, 0), log_of(tmp_path, 1)
    assert codes[0] not in (0, None), survivor  # it stopped by itself, with an error
    assert "DistributedError: rank 0 of 2: all_gather of" in survivor, survivor
    assert "another rank exited, crashed or did not arrive within 3 s" in survivor, survivor
    if failure == "exit":
        assert codes[1] not in (0, None) and "rank 1 gives up" in failed, failed
    assert elapsed < 30


def test_one_process_world_is_the_plain_functions(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with distributed.init() as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
        got = train_everything(ctx)
        tree = {"a": torch.ones(2, 3), "n": torch.tensor([4])}
        assert distributed.all_reduce_mean(tree, ctx, weight=3.0) is tree
        assert distributed.all_reduce_sum(tree, ctx) is tree
        assert distributed.broadcast(tree, ctx) is tree
        distributed.barrier(ctx)
    expected = reference()
    for run in ("ensemble", "single_task", *MTL_RUNS):
        assert max_difference(got[run]["params"], expected[run]["params"]) == 0.0
    assert got["gramian_refusal"] == ""  # one process: the Gramian path is exact


def test_shards_cover_every_member_once_as_evenly_as_possible():
    for count in range(1, 12):
        for world in range(1, count + 1):
            parts = [distributed.shard(count, r, world) for r in range(world)]
            assert [i for part in parts for i in part] == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    module, key = ensemble_net(), fm.random.key(4)
    full = fm.ensemble.init_members(module, key, 5)
    for members in (range(0, 3), range(3, 5)):
        alone = distributed.init_shard(module, key, 5, members)
        assert max_difference(alone, distributed.take_shard(full, members)) == 0.0


def test_bad_setup_is_rejected_with_one_clear_line(monkeypatch):
    with pytest.raises(ValueError, match=r"cannot shard 3 items over 4 ranks: every rank"):
        distributed.shard(3, 0, 4)
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, world_size\)"):
        distributed.shard(5, 2, 2)
    with pytest.raises(ValueError, match=r"`members` must be a non-empty range inside \[0, 5\)"):
        distributed.take_shard({"w": torch.zeros(5, 2)}, range(4, 7))
    two = distributed.Context(0, 2, 0, torch.device("cpu"), "gloo", None, 1.0)  # no group needed
    with pytest.raises(ValueError, match=r"a batch of 1 examples cannot be split over 2 ranks"):
        distributed.shard_batch((torch.zeros(1, 6), torch.zeros(1)), two)
    with pytest.raises(ValueError, match=r"`timeout_s` must be a positive number"):
        distributed.init(timeout_s=0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"missing \['MASTER_ADDR', 'MASTER_PORT'\]"):
        distributed.init(device="cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 and WORLD_SIZE=2 must satisfy"):
        distributed.init(device="cpu")


# ---------------------------------------------------------------------------- the workers


def _worker(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    # "train": rank 1 may lag far behind on a loaded machine; the failure scenarios time out.
    with distributed.init(timeout_s=3 if scenario != "train" else 300) as ctx:
        if scenario == "train":
            torch.save(train_everything(ctx), out / f"rank{ctx.rank}.pt")
            return
        if ctx.rank == 1:
            if scenario == "exit":
                raise RuntimeError("rank 1 gives up before the collective")
            time.sleep(60)  # "hang": alive but never joins; the parent kills it
        distributed.all_gather_members({"w": torch.zeros(1, 3)}, ctx, 2)


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
