"""One member-key rule for every entry point: member ``k`` of an ensemble keyed by ``key`` is the
single-model run keyed by ``fm.random.split(key, K)[k]`` — its initialisation
(``fm.ensemble.init_members``), its step keys and data order (``fm.train.fit``), and so member
``k`` of ``funcmtl train --members K``. ``split`` is prefix-stable, so member ``k`` does not
depend on ``K``."""

from __future__ import annotations

import torch
from torch import nn

import funcmtl as fm
from funcmtl import checkpoint, experiment, tree
from funcmtl.experiment import _state
from funcmtl_cli.main import main

TOLERANCE = 1e-6  # a vmap over K members may round otherwise than one model (other kernels)


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def _data(n: int = 50):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _close(a, b) -> None:
    for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
        torch.testing.assert_close(x, y, atol=TOLERANCE, rtol=0)


def _ensemble(members: int, init_key, train_key, shuffle="member"):
    module = _net()
    apply, _, _ = fm.functional(module)
    opt = fm.optim.adam(1e-2)
    loss = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    params, buffers = fm.ensemble.init_members(module, init_key, members)
    states = fm.tree.stack([fm.train.init_state(p, b, opt)
                            for p, b in fm.tree.unstack((params, buffers))])
    step = fm.ensemble.make_step(loss, opt, per_member_batch=shuffle == "member")
    return fm.train.fit(step, states, _data(), key=train_key, batch_size=16, epochs=3,
                        members=members, shuffle=shuffle).state


def _solo(init_key, train_key):
    module = _net()
    apply, _, _ = fm.functional(module)
    opt = fm.optim.adam(1e-2)
    step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    params, buffers = fm.init(module, init_key)
    return fm.train.fit(step, fm.train.init_state(params, buffers, opt), _data(),
                        key=train_key, batch_size=16, epochs=3).state


def test_member_k_of_fit_is_the_solo_run_keyed_by_split_key_k() -> None:
    init_key, train_key = fm.random.split(fm.random.key(4))
    three = _ensemble(3, init_key, train_key)
    for k in range(3):
        solo = _solo(fm.random.split(init_key, 3)[k], fm.random.split(train_key, 3)[k])
        _close(fm.ensemble.member(three.params, k), solo.params)


def test_member_0_does_not_depend_on_the_ensemble_size() -> None:
    init_key, train_key = fm.random.split(fm.random.key(5))
    for shuffle in ("member", "shared"):
        two, three = (_ensemble(k, init_key, train_key, shuffle) for k in (2, 3))
        for k in range(2):
            _close(fm.ensemble.member(two.params, k), fm.ensemble.member(three.params, k))


def test_with_early_stopping_each_member_is_still_its_solo_run() -> None:
    """Members stop on their own validation loss at different times; each ends as the run of
    its own key would (its last state and its best parameters)."""
    module = _net()
    apply, _, _ = fm.functional(module)
    opt = fm.optim.adam(5e-2)
    loss = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    x_val, y_val = _data(30)[0] + 0.5, _data(30)[1].flip(0)  # a shifted split: overfits soon

    def val_loss(params, buffers):
        return fm.losses.cross_entropy(apply(params, buffers, x_val)[0], y_val)

    common = dict(batch_size=10, epochs=12, patience=2, monitor="val")
    init_key, train_key = fm.random.split(fm.random.key(8))
    params, buffers = fm.ensemble.init_members(module, init_key, 3)
    states = fm.tree.stack([fm.train.init_state(p, b, opt)
                            for p, b in fm.tree.unstack((params, buffers))])
    ensemble = fm.train.fit(
        fm.ensemble.make_step(loss, opt, per_member_batch=True), states, _data(), key=train_key,
        members=3, shuffle="member", evaluate_fn=lambda s: {
            "val": torch.func.vmap(val_loss)(s.params, s.buffers)}, **common)
    stops = []
    for k in range(3):
        p, b = fm.init(module, fm.random.split(init_key, 3)[k])
        solo = fm.train.fit(fm.train.make_step(loss, opt), fm.train.init_state(p, b, opt),
                            _data(), key=fm.random.split(train_key, 3)[k],
                            evaluate_fn=lambda s: {"val": float(val_loss(s.params, s.buffers))},
                            **common)
        _close(fm.ensemble.member(ensemble.state.params, k), solo.state.params)
        _close(fm.ensemble.member(ensemble.best_state.params, k), solo.best_state.params)
        assert int(ensemble.run.best_step[k]) == int(solo.run.best_step)
        stops.append(int(solo.state.step))
    assert len(set(stops)) > 1, stops  # the members did stop at different steps


def test_an_ensemble_trained_in_groups_is_the_ensemble_trained_at_once() -> None:
    """The README's recipe for more members than fit at once: groups ``range(a, b)``."""
    module = _net()
    apply, _, _ = fm.functional(module)
    opt = fm.optim.adam(1e-2)
    step = fm.ensemble.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt,
                                 per_member_batch=True)
    init_key, train_key = fm.random.split(fm.random.key(6))

    def group(members: range):
        params, buffers = fm.distributed.init_shard(module, init_key, 3, members)
        states = fm.tree.stack([fm.train.init_state(p, b, opt)
                                for p, b in fm.tree.unstack((params, buffers))])
        return fm.train.fit(step, states, _data(), key=train_key, batch_size=16, epochs=2,
                            members=members, shuffle="member").state.params

    joined = fm.ensemble.concat_members([group(range(0, 2)), group(range(2, 3))])
    _close(joined, group(range(3)))


def test_shuffle_member_gives_each_member_its_own_data_order() -> None:
    """Two copies of one model without dropout: only the data order can tell them apart."""
    module = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    apply, _, _ = fm.functional(module)
    opt = fm.optim.sgd(0.1)
    params, buffers = fm.init(module, fm.random.key(0))
    states = fm.tree.stack([fm.train.init_state(params, buffers, opt)] * 2)
    loss = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    for shuffle, same in (("member", False), ("shared", True)):
        step = fm.ensemble.make_step(loss, opt, per_member_batch=shuffle == "member")
        w = fm.train.fit(step, states, _data(), key=fm.random.key(1), batch_size=16, epochs=1,
                         members=2, shuffle=shuffle).state.params["0.weight"]
        assert torch.equal(w[0], w[1]) == same, shuffle


# The CLI: funcmtl train --members K is fm.ensemble + fm.train.fit with the library's rule.
ARGS = ["--hidden", "16", "--batch-size", "32", "--steps", "12", "--method", "pcgrad",
        "--dropout", "0.2", "--seed", "3", "--data-options", "num_pairs=(200,50,50)"]


def _cli_members(tmp_path, members: int):
    out = tmp_path / f"k{members}"
    assert main(["train", *ARGS, "--members", str(members), "--out", str(out)]) == 0
    config = experiment.load_run(out)[0]
    splits = experiment.load_splits(config)
    setup = experiment.build(config, splits, _state.total_steps(config, len(splits.train)))
    like = _state.initial_tree(config, setup, torch.device("cpu"))
    return config, splits, setup, checkpoint.load(out / "checkpoint.pt", like)[0].state


def _library_members(config, splits, setup, members: int):
    init_key, train_key = fm.random.split(fm.random.key(config.seed))
    params, buffers = fm.ensemble.init_members(setup.module, init_key, members)
    states = fm.tree.stack([
        fm.mtl.init_state(p, b, setup.tasks, setup.optimizer, setup.aggregator, setup.weighting)
        for p, b in fm.tree.unstack((params, buffers))
    ])
    step = torch.func.vmap(fm.mtl.make_step(
        setup.model, setup.tasks, setup.optimizer, setup.aggregator, setup.weighting
    ))
    data = (splits.train.inputs, dict(splits.train.targets))
    return fm.train.fit(step, states, data, key=train_key, batch_size=config.batch_size,
                        steps=config.steps, members=members, shuffle="member").state


def test_cli_member_k_equals_the_library_path_and_does_not_depend_on_k(tmp_path) -> None:
    config, splits, setup, cli_three = _cli_members(tmp_path, 3)
    library = _library_members(config, splits, setup, 3)
    assert int(cli_three.step[0]) == 12
    for k in range(3):
        _close(fm.ensemble.member(cli_three.params, k), fm.ensemble.member(library.params, k))
    _, _, _, cli_two = _cli_members(tmp_path, 2)
    _close(fm.ensemble.member(cli_two.params, 0), fm.ensemble.member(cli_three.params, 0))
    # Not a test that cannot fail: the members themselves differ.
    first = next(iter(cli_three.params.values()))
    assert not torch.allclose(first[0], first[1])
