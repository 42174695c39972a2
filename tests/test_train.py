"""The functional train step and fit loop against plain torch training."""

import copy

import pytest
import torch
from torch import nn

import funcmtl as fm


def make_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def net(dropout=0.0):
    return nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 3))


def test_step_matches_torch_module_with_torch_optim_adam():
    module = net()
    apply, params, buffers = fm.functional(module)
    opt = fm.optim.adam(1e-2)
    step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    state = fm.train.init_state(params, buffers, opt)

    reference = copy.deepcopy(module)
    torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    x, y = make_data()
    for i in range(25):
        batch = (x[i % 3 * 32 : (i % 3 + 1) * 32], y[i % 3 * 32 : (i % 3 + 1) * 32])
        state, metrics = step(state, batch, fm.random.key(i))
        torch_opt.zero_grad()
        loss = nn.functional.cross_entropy(reference(batch[0]), batch[1])
        loss.backward()
        torch_opt.step()
        assert torch.allclose(metrics["loss"], loss.detach(), atol=1e-5)
    assert state.step == 25
    for name, p in reference.named_parameters():
        assert (state.params[name] - p.detach()).abs().max() <= 1e-5


def test_vmapped_step_over_stacked_states_equals_member_steps():
    module = net(dropout=0.3)
    apply, _, buffers = fm.functional(module)
    opt = fm.optim.sgd(0.1, momentum=0.9)
    step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    keys = fm.random.split(fm.random.key(0), 3)
    states = [fm.train.init_state(fm.init(module, k)[0], buffers, opt) for k in keys]
    stacked = fm.tree.stack(states)
    batch = make_data(32)
    vstep = torch.func.vmap(step, in_dims=(0, None, 0), randomness="different")
    for s in range(5):
        step_keys = torch.stack([fm.random.fold_in(k, s) for k in keys])
        stacked, _ = vstep(stacked, batch, step_keys)
        states = [step(st, batch, sk)[0] for st, sk in zip(states, step_keys, strict=True)]
    for member, solo in zip(fm.tree.unstack(stacked), states, strict=True):
        for a, b in zip(fm.tree.leaves(member), fm.tree.leaves(solo), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_fit_is_reproducible_and_keeps_the_best_state():
    module = net(dropout=0.2)
    apply, _, buffers = fm.functional(module)
    x, y = make_data(300)
    train, val = (x[:200], y[:200]), (x[200:], y[200:])
    opt = fm.optim.adam(3e-2)
    step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)

    def validate(state):
        return {"val_loss": fm.train.evaluate(
            apply, state.params, state.buffers, val, {"loss": fm.losses.cross_entropy})["loss"]}

    def run(seed):
        params, _ = fm.init(module, fm.random.key(0))
        return fm.train.fit(step, fm.train.init_state(params, buffers, opt), train,
                            key=fm.random.key(seed), batch_size=32, epochs=12,
                            evaluate_fn=validate, monitor="val_loss", patience=3)

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a.state.params[n], b.state.params[n]) for n in a.state.params)
    assert not torch.equal(a.state.params["0.weight"], c.state.params["0.weight"])
    losses = [row["val_loss"] for row in a.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert validate(a.best_state)["val_loss"] == pytest.approx(losses[best])
    assert int(a.run.best_step) == (best + 1) * 7  # 200 examples / 32 -> 7 steps an epoch
    # Early stopping: it stopped exactly `patience` epochs after the best one, or ran out.
    assert len(losses) == 12 or len(losses) - 1 - best == 3


def test_early_stopping_counts_evaluations_since_the_best():
    stopper = fm.train.EarlyStopping(patience=2, mode="max")
    seen = []
    for value in [0.5, 0.6, 0.55, 0.6, 0.58]:
        stopper = stopper.update(value)
        seen.append((stopper.improved, stopper.should_stop))
    # 0.6 at index 1 is the best; an equal 0.6 later is not an improvement.
    assert seen == [(True, False), (True, False), (False, False), (False, True), (False, True)]
    assert stopper.best == 0.6 and stopper.best_index == 1
    with pytest.raises(ValueError, match="`mode` must be 'min' or 'max'; got 'up'"):
        fm.train.EarlyStopping(1, mode="up").update(1.0)


def test_fit_rejects_unknown_monitor():
    module = net()
    apply, params, buffers = fm.functional(module)
    opt = fm.optim.sgd(0.1)
    step = fm.train.make_step(fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt)
    with pytest.raises(ValueError, match=r"`monitor` must name a logged value; got 'acc'"):
        fm.train.fit(step, fm.train.init_state(params, buffers, opt), make_data(),
                     key=fm.random.key(0), batch_size=32, epochs=1, monitor="acc")
