"""Vectorized ensembles: member k inside the vmapped ensemble equals member k trained alone."""

import itertools

import pytest
import torch
from torch import nn

import funcmtl as fm

MEMBERS, STEPS, BATCH = 4, 20, 16


def net(dropout: float = 0.0, batchnorm: bool = False) -> nn.Module:
    layers = [nn.Linear(6, 24)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(24))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(24, 3)]
    return nn.Sequential(*layers)


def dataset(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


OPTIMIZERS = {
    "sgd": lambda: fm.optim.sgd(0.1, momentum=0.9),
    "adam": lambda: fm.optim.adam(1e-2),
    # Clipping reduces over parameters: it must use each member's own norm.
    "clipped_adam": lambda: fm.optim.chain(
        fm.optim.clip_by_global_norm(0.05), fm.optim.adam(1e-2)
    ),
}


def train_both_ways(module, optimizer, *, bagging, donate, chunk_size=None):
    """Train K members in one vmapped ensemble and each member alone; return both params."""
    apply, _, _ = fm.functional(module)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    data = dataset()
    k_init, k_bag, k_order, k_steps = fm.random.split(fm.random.key(7), 4)
    member_keys = fm.random.split(k_steps, MEMBERS)
    indices = fm.data.bootstrap(k_bag, MEMBERS, 64) if bagging else None

    params, buffers = fm.ensemble.init_members(module, k_init, MEMBERS)
    states = fm.ensemble.init_states(params, buffers, optimizer)
    ensemble_step = fm.ensemble.make_step(
        loss_fn, optimizer, per_member_batch=bagging, donate=donate, chunk_size=chunk_size
    )
    batches = list(fm.data.batches(data, BATCH, key=k_order, member_indices=indices))
    for s in range(STEPS):
        keys = torch.stack([fm.random.fold_in(k, s) for k in member_keys])
        states, metrics = ensemble_step(states, batches[s % len(batches)], keys)
    assert metrics["loss"].shape == (MEMBERS,)

    solo_step = fm.train.make_step(loss_fn, optimizer)
    solos = []
    for k, member_init in enumerate(fm.random.split(k_init, MEMBERS)):
        own = data if indices is None else fm.data.take(data, indices[k])
        solo_batches = list(fm.data.batches(own, BATCH, key=k_order))
        state = fm.train.init_state(*fm.init(module, member_init), optimizer)
        for s in range(STEPS):
            state, _ = solo_step(
                state, solo_batches[s % len(solo_batches)], fm.random.fold_in(member_keys[k], s)
            )
        solos.append(state)
    return states, solos


def max_member_difference(states, solos):
    worst = 0.0
    for k, solo in enumerate(solos):
        member = fm.ensemble.member(states, k)
        for a, b in zip(fm.tree.leaves(member.params), fm.tree.leaves(solo.params), strict=True):
            worst = max(worst, float((a - b).abs().max()))
        for a, b in zip(fm.tree.leaves(member.buffers), fm.tree.leaves(solo.buffers), strict=True):
            worst = max(worst, float((a.double() - b.double()).abs().max()))
    return worst


@pytest.mark.parametrize(
    "optimizer,dropout,bagging,donate",
    list(itertools.product(OPTIMIZERS, [0.0, 0.3], [False, True], [False, True])),
)
def test_member_in_vmapped_ensemble_equals_member_trained_alone(
    optimizer, dropout, bagging, donate
):
    states, solos = train_both_ways(
        net(dropout), OPTIMIZERS[optimizer](), bagging=bagging, donate=donate
    )
    assert max_member_difference(states, solos) <= 1e-5


def test_members_really_differ_and_bagging_changes_the_data():
    plain, _ = train_both_ways(net(), OPTIMIZERS["adam"](), bagging=False, donate=False)
    bagged, _ = train_both_ways(net(), OPTIMIZERS["adam"](), bagging=True, donate=False)
    w = plain.params["0.weight"]
    assert not torch.allclose(w[0], w[1])
    assert not torch.allclose(w, bagged.params["0.weight"])


def test_batchnorm_running_stats_are_kept_per_member():
    states, solos = train_both_ways(
        net(batchnorm=True), OPTIMIZERS["sgd"](), bagging=True, donate=True
    )
    assert states.buffers["1.running_mean"].shape == (MEMBERS, 24)
    assert max_member_difference(states, solos) <= 1e-5
    means = states.buffers["1.running_mean"]
    assert not torch.allclose(means[0], means[1])


def test_chunked_vmap_gives_the_same_members():
    states, solos = train_both_ways(
        net(0.2), OPTIMIZERS["adam"](), bagging=False, donate=False, chunk_size=3
    )
    assert max_member_difference(states, solos) <= 1e-5


def test_learning_rate_sweep_as_an_ensemble_equals_solo_runs():
    module = net()
    apply, _, _ = fm.functional(module)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    rates = [1e-3, 1e-2, 3e-2, 1e-1]
    factory = lambda hp: fm.optim.adam(hp["learning_rate"])  # noqa: E731
    params, buffers = fm.ensemble.init_members(module, fm.random.key(1), 1)
    params = fm.tree.map(lambda x: x.expand(4, *x.shape[1:]).clone(), params)  # same init
    states = fm.ensemble.init_states(
        params, {}, factory, hparams={"learning_rate": torch.tensor(rates)}
    )
    step = fm.ensemble.make_step(loss_fn, factory, donate=True)
    x, y = dataset()
    keys = fm.random.split(fm.random.key(2), 4)
    for _ in range(STEPS):
        states, _ = step(states, (x, y), keys)
    for k, rate in enumerate(rates):
        solo_opt = fm.optim.adam(rate)
        solo = fm.train.init_state(fm.ensemble.member(params, k), {}, solo_opt)
        solo_step = fm.train.make_step(loss_fn, solo_opt)
        for _ in range(STEPS):
            solo, _ = solo_step(solo, (x, y), keys[k])
        member = fm.ensemble.member(states.params, k)
        for name in member:
            assert (member[name] - solo.params[name]).abs().max() <= 1e-5
    final = states.params["3.weight"]
    assert all(not torch.allclose(final[i], final[j]) for i, j in [(0, 1), (1, 2), (2, 3)])


def test_member_module_round_trip_and_concat():
    module = net(batchnorm=True)
    params, buffers = fm.ensemble.init_members(module, fm.random.key(3), 3)
    assert fm.ensemble.num_members(params) == 3
    one = fm.ensemble.member_module(module, params, buffers, 2)
    state = one.state_dict()
    for name, value in params.items():
        assert torch.equal(state[name], value[2])
    solo, _ = fm.init(module, fm.random.split(fm.random.key(3), 3)[2])
    assert all(torch.equal(solo[n], params[n][2]) for n in solo)
    more, _ = fm.ensemble.init_members(module, fm.random.key(4), 2)
    joined = fm.ensemble.concat_members([params, more])
    assert fm.ensemble.num_members(joined) == 5


def test_bad_ensemble_input_is_rejected_clearly():
    module = net()
    with pytest.raises(ValueError, match="`members` must be a positive integer; got 0"):
        fm.ensemble.init_members(module, fm.random.key(0), 0)
    params, buffers = fm.ensemble.init_members(module, fm.random.key(0), 3)
    with pytest.raises(ValueError, match=r"one value per member, shape \(3,\); got \(2,\)"):
        fm.ensemble.init_states(params, buffers, fm.optim.sgd(0.1),
                                hparams={"learning_rate": torch.tensor([0.1, 0.2])})
    with pytest.raises(ValueError, match=r"`index` must be in \[-3, 3\); got 3"):
        fm.ensemble.member(params, 3)
    with pytest.raises(ValueError, match="one leading member axis"):
        fm.ensemble.num_members({"a": torch.zeros(3, 2), "b": torch.zeros(2)})


def test_members_of_a_model_without_buffers():
    module = net()
    params, buffers = fm.ensemble.init_members(module, fm.random.key(5), 3)
    assert buffers == {} and fm.ensemble.member(buffers, 1) == {}
    one = fm.ensemble.member_module(module, params, buffers, 1)
    assert torch.equal(one[0].weight, params["0.weight"][1])


def test_per_member_dropout_rates_from_hparams():
    module = net(dropout=0.5)
    apply, _, _ = fm.functional(module)
    loss_fn = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    opt = fm.optim.sgd(0.1)
    rates = torch.tensor([0.0, 0.2, 0.5])
    params, buffers = fm.ensemble.init_members(module, fm.random.key(6), 3)
    states = fm.ensemble.init_states(params, buffers, opt, hparams={"dropout_rate": rates})
    keys = fm.random.split(fm.random.key(8), 3)
    batch = dataset()
    states, _ = fm.ensemble.make_step(loss_fn, opt)(states, batch, keys)
    for k in range(3):
        solo = fm.train.init_state(
            fm.ensemble.member(params, k), {}, opt, hparams={"dropout_rate": float(rates[k])}
        )
        solo, _ = fm.train.make_step(loss_fn, opt)(solo, batch, keys[k])
        member = fm.ensemble.member(states.params, k)
        assert all(torch.allclose(member[n], solo.params[n], atol=1e-6) for n in member)
    # Rate 0 means no dropout at all: the same as a model without dropout layers.
    plain = fm.train.init_state(fm.ensemble.member(params, 0), {}, opt)
    plain, _ = fm.train.make_step(
        fm.train.supervised_loss(fm.functional(net())[0], fm.losses.cross_entropy), opt
    )(plain, batch, keys[0])
    assert torch.allclose(plain.params["0.weight"], states.params["0.weight"][0], atol=1e-6)
