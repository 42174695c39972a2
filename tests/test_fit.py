"""``fm.train.fit``: continuing from a FitState, per-member early stopping, callbacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import funcmtl as fm


def _setup(dropout: float = 0.3, device: torch.device | str = "cpu"):
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 2))
    apply, _, _ = fm.functional(module)
    opt = fm.optim.adam(1e-2)
    loss = fm.train.supervised_loss(apply, fm.losses.cross_entropy)
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(40, 4, generator=gen), torch.randint(0, 2, (40,), generator=gen))
    return module, opt, loss, fm.tree.map(lambda x: x.to(device), data)


def _ensemble_state(module, opt, members: int, device: torch.device | str = "cpu"):
    params, buffers = fm.ensemble.init_members(module, fm.random.key(0), members, device=device)
    return fm.tree.stack([fm.train.init_state(p, b, opt)
                          for p, b in fm.tree.unstack((params, buffers))])


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(fm.tree.leaves(a), fm.tree.leaves(b),
                                                 strict=True))


def test_a_run_continued_from_its_fit_state_is_bit_identical(device) -> None:
    module, opt, loss, data = _setup(device=device)
    step = fm.ensemble.make_step(loss, opt, per_member_batch=True)
    state = _ensemble_state(module, opt, 3, device)
    common = dict(key=fm.random.key(2), batch_size=16, members=3, shuffle="member",
                  evaluate_fn=lambda s: {"loss": s.params["0.weight"].pow(2).sum((1, 2))},
                  patience=50)

    class StopAt5(fm.train.Callback):  # an interruption, mid-epoch (3 steps an epoch)
        def __init__(self):
            self.done = 0

        def after_step(self, run, metrics):
            self.done = int(run.step[0])

        def stop_requested(self):
            return self.done == 5

    whole = fm.train.fit(step, state, data, steps=11, **common)
    first = fm.train.fit(step, state, data, steps=11, callbacks=[StopAt5()], **common)
    assert first.run.step.tolist() == [5, 5, 5]
    rest = fm.train.fit(step, first.run, data, steps=11, **common)
    assert _equal(whole.run, rest.run)  # state, best parameters, counters
    assert [r["step"] for r in whole.history] == [3, 6, 9, 11]
    assert [r["step"] for r in first.history + rest.history] == [3, 6, 9, 11]


def test_each_member_keeps_its_own_best_and_the_run_stops_when_all_have() -> None:
    module, opt, loss, data = _setup(dropout=0.0)
    step = fm.ensemble.make_step(loss, opt)
    # Member 0 improves at every evaluation, member 1 only at the first two.
    scores = iter(torch.tensor([[5.0, 5.0], [4.0, 4.0], [3.0, 9.0], [2.0, 9.0], [1.0, 9.0],
                                [0.5, 9.0], [0.1, 9.0]]))
    seen = []

    def evaluate(state):
        seen.append(fm.tree.map(torch.clone, state.params))
        return {"score": next(scores)}

    result = fm.train.fit(step, _ensemble_state(module, opt, 2), data, key=fm.random.key(3),
                          batch_size=20, epochs=7, members=2, evaluate_fn=evaluate,
                          monitor="score", patience=3)
    assert len(result.history) == 7 and not result.stopped_early  # member 0 never stopped
    assert result.run.best_step.tolist() == [14, 4]  # 2 steps an epoch
    assert result.run.waiting.tolist() == [0, 3]  # member 1 stopped at its 5th evaluation
    for name, value in result.best_state.params.items():
        assert torch.equal(value[0], seen[6][name][0]) and torch.equal(value[1], seen[1][name][1])
        # ... and was not trained after it: it is what a run of its own would have ended with
        assert torch.equal(result.state.params[name][1], seen[4][name][1])
        assert not torch.equal(result.state.params[name][0], seen[4][name][0])

    scores = iter(torch.tensor([[5.0, 5.0], [6.0, 4.0], [6.0, 9.0], [6.0, 9.0], [6.0, 9.0]]))
    result = fm.train.fit(step, _ensemble_state(module, opt, 2), data, key=fm.random.key(3),
                          batch_size=20, epochs=7, members=2, evaluate_fn=evaluate,
                          monitor="score", patience=3)
    assert result.stopped_early and len(result.history) == 5  # member 1 ran out last


def test_callbacks_see_every_step_and_can_stop_the_run() -> None:
    module, opt, loss, data = _setup()
    step = fm.train.make_step(loss, opt)
    params, buffers = fm.init(module, fm.random.key(0))
    events = []

    class Recorder(fm.train.Callback):
        def after_step(self, run, metrics):
            events.append(("step", int(run.step)))

        def after_eval(self, run, values):
            events.append(("eval", int(run.step)))

        def stop_requested(self):
            return len([e for e in events if e[0] == "step"]) == 4

        def end_of_step(self, run, last):
            events.append(("end", int(run.step), last))

    result = fm.train.fit(step, fm.train.init_state(params, buffers, opt), data,
                          key=fm.random.key(1), batch_size=16, epochs=5,
                          callbacks=[Recorder()])
    assert events == [("step", 1), ("end", 1, False), ("step", 2), ("end", 2, False),
                      ("step", 3), ("eval", 3), ("end", 3, False), ("step", 4),
                      ("end", 4, True)]
    assert int(result.state.step) == 4 and len(result.history) == 1


def test_a_fit_state_is_continued_only_in_its_own_mode() -> None:
    module, opt, loss, data = _setup()
    params, buffers = fm.init(module, fm.random.key(0))
    run = fm.train.fit_state(fm.train.init_state(params, buffers, opt), mode="min")
    with pytest.raises(ValueError, match="made with mode='min'; got mode='max'"):
        fm.train.fit(fm.train.make_step(loss, opt), run, data, key=fm.random.key(1),
                     batch_size=16, epochs=1, mode="max")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=1, steps=3), "pass one of `epochs` and `steps`"),
        (dict(epochs=0), "`epochs` must be a positive integer; got 0"),
        (dict(epochs=1, shuffle="each"), "`shuffle` must be one of"),
        (dict(epochs=1, members=range(0)), "`members` must be a positive int or a non-empty"),
    ],
)
def test_fit_names_what_it_expected(kwargs, message) -> None:
    module, opt, loss, data = _setup()
    params, buffers = fm.init(module, fm.random.key(0))
    with pytest.raises(ValueError, match=message):
        fm.train.fit(fm.train.make_step(loss, opt), fm.train.init_state(params, buffers, opt),
                     data, key=fm.random.key(1), batch_size=16, **kwargs)
