"""Tests for funcmtl.optim: equivalence with torch.optim, hand-computed references, vmap."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import funcmtl as fm
import funcmtl.optim as O
from funcmtl.optim import _leafwise

STEPS = 25
_data = torch.Generator().manual_seed(1)
X = torch.randn(32, 4, generator=_data)
Y = torch.randn(32, 3, generator=_data)


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


MLP = make_mlp()


def mlp_params() -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in make_mlp().named_parameters()}


def loss_fn(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((functional_call(MLP, params, (X,)) - Y) ** 2).mean()


def run_funcmtl(opt: O.GradientTransformation, steps: int = STEPS) -> dict[str, torch.Tensor]:
    params = mlp_params()
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(grad(loss_fn)(params), state, params)
        params = O.apply_updates(params, updates)
    return params


def run_torch(make_opt: Callable, make_scheduler: Callable | None) -> dict[str, torch.Tensor]:
    module = make_mlp()
    opt = make_opt(module.parameters())
    scheduler = make_scheduler(opt) if make_scheduler else None
    for _ in range(STEPS):
        opt.zero_grad()
        ((module(X) - Y) ** 2).mean().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return {name: p.detach() for name, p in module.named_parameters()}


def max_abs_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


# name -> (funcmtl optimizer, torch.optim optimizer, torch lr scheduler or None)
CASES = {
    "sgd": (lambda: O.sgd(0.1), lambda ps: torch.optim.SGD(ps, lr=0.1), None),
    "sgd_momentum": (
        lambda: O.sgd(0.1, momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        None,
    ),
    "sgd_nesterov": (
        lambda: O.sgd(0.05, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        None,
    ),
    "sgd_weight_decay": (
        lambda: O.sgd(0.1, momentum=0.5, weight_decay=0.05),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.05),
        None,
    ),
    "sgd_step_lr": (
        lambda: O.sgd(O.step_decay_schedule(0.2, step_size=5, gamma=0.5), momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5),
    ),
    "adam": (lambda: O.adam(0.01), lambda ps: torch.optim.Adam(ps, lr=0.01), None),
    "adam_weight_decay": (
        lambda: O.adam(0.01, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        None,
    ),
    "adamw": (
        lambda: O.adamw(0.01, weight_decay=0.1),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        None,
    ),
    "adamw_cosine": (
        lambda: O.adamw(O.cosine_decay_schedule(0.02, decay_steps=STEPS, alpha=0.1)),
        lambda ps: torch.optim.AdamW(ps, lr=0.02),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS, eta_min=0.002),
    ),
    "rmsprop": (lambda: O.rmsprop(0.01), lambda ps: torch.optim.RMSprop(ps, lr=0.01), None),
    "rmsprop_centered": (
        lambda: O.rmsprop(0.01, centered=True),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, centered=True),
        None,
    ),
    "rmsprop_momentum": (
        lambda: O.rmsprop(0.005, momentum=0.9),
        lambda ps: torch.optim.RMSprop(ps, lr=0.005, momentum=0.9),
        None,
    ),
    "rmsprop_all": (
        lambda: O.rmsprop(
            0.005, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.1
        ),
        lambda ps: torch.optim.RMSprop(
            ps, lr=0.005, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.1
        ),
        None,
    ),
}


# --- equivalence with torch.optim ----------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_optim(name: str) -> None:
    make_ours, make_theirs, make_scheduler = CASES[name]
    ours = run_funcmtl(make_ours())
    theirs = run_torch(make_theirs, make_scheduler)
    assert max_abs_diff(ours, mlp_params()) > 1e-3  # the run really moved the params
    assert max_abs_diff(ours, theirs) <= 1e-5


@pytest.mark.parametrize("name", CASES)
def test_per_leaf_path_equals_foreach_path(name: str, monkeypatch) -> None:
    fused = run_funcmtl(CASES[name][0]())
    monkeypatch.setattr(_leafwise, "use_foreach", lambda *args: False)
    per_leaf = run_funcmtl(CASES[name][0]())
    assert max_abs_diff(fused, per_leaf) <= 1e-6


def test_foreach_is_used_only_on_plain_tensors() -> None:
    xs = [torch.ones(2), torch.ones(3)]
    assert _leafwise.use_foreach(xs, 0.5)
    seen = []
    vmap(lambda x: seen.append(_leafwise.use_foreach([x], 0.5)) or x)(torch.ones(4, 2))
    vmap(lambda lr: seen.append(_leafwise.use_foreach(xs, lr)) or lr)(torch.ones(4))
    assert seen == [False, False]


@pytest.mark.parametrize(
    "make",
    [
        lambda h: O.sgd(h(0.1), momentum=h(0.9), weight_decay=h(0.01)),
        lambda h: O.adam(h(0.01), b1=h(0.8), b2=h(0.99), eps=h(1e-6), weight_decay=h(0.1)),
        lambda h: O.adamw(h(0.01), weight_decay=h(0.1)),
        lambda h: O.rmsprop(h(0.01), alpha=h(0.9), momentum=h(0.5), centered=True),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_tensor_hyperparameters_equal_float_ones(make: Callable) -> None:
    with_floats = run_funcmtl(make(float), steps=10)
    with_tensors = run_funcmtl(make(torch.tensor), steps=10)
    assert max_abs_diff(with_floats, with_tensors) <= 1e-6


@pytest.mark.parametrize("name", ["sgd_weight_decay", "adamw", "rmsprop_all"])
def test_update_does_not_modify_its_inputs(name: str) -> None:
    opt = CASES[name][0]()
    params = mlp_params()
    grads = grad(loss_fn)(params)
    state = opt.init(params)
    before = [x.clone() for x in fm.tree.leaves((params, grads, state))]
    updates, _ = opt.update(grads, state, params)
    O.apply_updates(params, updates)
    for old, new in zip(before, fm.tree.leaves((params, grads, state)), strict=True):
        assert torch.equal(old, new)


# --- primitives against hand-computed float64 references -----------------------------------


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_penalties_and_chain_by_hand() -> None:
    params = {"w": f64(1.0, -2.0, 0.0)}
    grads = {"w": f64(0.5, 0.5, 0.5)}
    # L1: g + 0.2·sign(p), with sign(0) = 0.
    out, _ = O.add_l1(0.2).update(grads, O.EmptyState(), params)
    torch.testing.assert_close(out["w"], f64(0.7, 0.3, 0.5))
    # L2: g + 0.1·p.
    out, _ = O.add_decayed_weights(0.1).update(grads, O.EmptyState(), params)
    torch.testing.assert_close(out["w"], f64(0.6, 0.3, 0.5))
    # chain runs left to right: -2·(g + 0.1·p + 0.2·sign(p)).
    opt = O.chain(O.add_decayed_weights(0.1), O.add_l1(0.2), O.scale(-2.0))
    out, state = opt.update(grads, opt.init(params), params)
    torch.testing.assert_close(out["w"], f64(-1.6, -0.2, -1.0))
    assert len(state) == 3
    # ... so the order matters: -2·g + 0.1·p.
    opt = O.chain(O.scale(-2.0), O.add_decayed_weights(0.1))
    out, _ = opt.update(grads, opt.init(params), params)
    torch.testing.assert_close(out["w"], f64(-0.9, -1.2, -1.0))


def test_trace_by_hand() -> None:
    g1, g2 = {"w": f64(1.0, 2.0)}, {"w": f64(3.0, -1.0)}
    for nesterov, expected in [(False, f64(3.5, 0.0)), (True, f64(4.75, -1.0))]:
        opt = O.trace(0.5, nesterov=nesterov)
        _, state = opt.update(g1, opt.init(g1))
        out, state = opt.update(g2, state)
        # m1 = g1; m2 = g2 + 0.5·m1 = (3.5, 0); Nesterov: g2 + 0.5·m2 = (4.75, -1).
        torch.testing.assert_close(out["w"], expected)
        torch.testing.assert_close(state.trace["w"], f64(3.5, 0.0))


def test_scale_by_adam_by_hand() -> None:
    b1, b2, eps = 0.9, 0.999, 1e-8
    g1, g2 = 2.0, -0.5
    opt = O.scale_by_adam(b1, b2, eps)
    out1, state = opt.update({"w": f64(g1)}, opt.init({"w": f64(0.0)}))
    out2, state = opt.update({"w": f64(g2)}, state)
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1**2
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2
    expected1 = (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
    expected2 = (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)) + eps)
    torch.testing.assert_close(out1["w"], f64(expected1), rtol=1e-12, atol=0)
    torch.testing.assert_close(out2["w"], f64(expected2), rtol=1e-12, atol=0)
    assert state.count.dtype == torch.int64 and int(state.count) == 2


def test_clip_by_global_norm_by_hand() -> None:
    grads = {"a": f64(3.0, 4.0), "b": f64(12.0)}  # global norm 13
    out, _ = O.clip_by_global_norm(6.5).update(grads, O.EmptyState())
    factor = 6.5 / (13.0 + 1e-6)
    torch.testing.assert_close(out["a"], f64(3 * factor, 4 * factor))
    torch.testing.assert_close(out["b"], f64(12 * factor))
    out, _ = O.clip_by_global_norm(100.0).update(grads, O.EmptyState())
    torch.testing.assert_close(out["a"], grads["a"])  # factor min(1, ·) = 1


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 100.0])
def test_clip_by_global_norm_equals_clip_grad_norm(max_norm: float) -> None:
    module = make_mlp()
    ((module(X) - Y) ** 2).mean().backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    out, _ = O.clip_by_global_norm(max_norm).update(grads, O.EmptyState())
    torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    for name, p in module.named_parameters():
        torch.testing.assert_close(out[name], p.grad, rtol=0, atol=1e-7)


def test_partition_by_hand() -> None:
    params = {"trunk.w": f64(1.0, 2.0), "head.w": f64(3.0)}
    grads = {"trunk.w": f64(1.0, 1.0), "head.w": f64(1.0)}
    transforms = {"trunk": O.sgd(0.1), "head": O.sgd(1.0, weight_decay=0.5)}
    by_name = O.partition(transforms, lambda name: name.split(".")[0])
    by_tree = O.partition(transforms, {"trunk.w": "trunk", "head.w": "head"})
    for opt in (by_name, by_tree):
        out, state = opt.update(grads, opt.init(params), params)
        torch.testing.assert_close(out["trunk.w"], f64(-0.1, -0.1))
        torch.testing.assert_close(out["head.w"], f64(-(1.0 + 0.5 * 3.0)))  # -lr·(g + wd·p)
        assert list(out) == ["trunk.w", "head.w"]
        assert set(state.inner_states) == {"trunk", "head"}


def test_partition_nested_params_and_per_group_clipping() -> None:
    params = {"trunk": {"w": f64(0.0, 0.0)}, "heads": (f64(0.0), f64(0.0))}
    grads = {"trunk": {"w": f64(3.0, 4.0)}, "heads": (f64(0.3), f64(0.4))}
    assert O.leaf_names(params) == ["trunk.w", "heads.0", "heads.1"]
    clip = O.clip_by_global_norm(1.0)
    opt = O.partition({"trunk": clip, "heads": clip}, lambda n: n.split(".")[0])
    out, _ = opt.update(grads, opt.init(params), params)
    # Trunk norm 5 -> scaled by 1/(5 + 1e-6); heads norm 0.5 ≤ 1 -> unchanged.
    torch.testing.assert_close(out["trunk"]["w"], f64(3.0, 4.0) / (5.0 + 1e-6))
    torch.testing.assert_close(out["heads"][1], f64(0.4))
    assert isinstance(out["heads"], tuple)


# --- schedules -----------------------------------------------------------------------------


def torch_lrs(make_scheduler: Callable, steps: int, lr: float) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler, lrs = make_scheduler(opt), []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def values(schedule: Callable, steps: int) -> torch.Tensor:
    return torch.stack([schedule(torch.tensor(t)) for t in range(steps)]).double()


def test_step_decay_matches_step_lr() -> None:
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 20, 0.1)
    got = values(O.step_decay_schedule(0.1, step_size=3, gamma=0.5), 20)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


def test_cosine_decay_matches_cosine_annealing_lr() -> None:
    expected = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 11, 0.1
    )
    schedule = O.cosine_decay_schedule(0.1, decay_steps=10, alpha=0.1)
    got = values(schedule, 11)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    assert float(schedule(torch.tensor(25))) == pytest.approx(0.01)  # stays at α·init


def test_warmup_schedules_closed_form() -> None:
    warm = O.linear_warmup_schedule(1.0, warmup_steps=4, init_value=0.2)
    torch.testing.assert_close(values(warm, 7), f64(0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0))
    sched = O.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=12, end_value=0.1)
    got = values(sched, 20)
    expected = [t / 2 for t in range(2)] + [
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t - 2, 10) / 10)) for t in range(2, 20)
    ]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    assert float(sched(torch.tensor(7))) == pytest.approx(0.55)  # half-way down the cosine


@pytest.mark.parametrize(
    "schedule",
    [
        O.constant_schedule(0.3),
        O.step_decay_schedule(0.1, 3, 0.5),
        O.cosine_decay_schedule(0.1, 10),
        O.warmup_cosine_decay_schedule(0.0, 1.0, 3, 12),
    ],
)
def test_schedules_vmap_over_counts(schedule: Callable) -> None:
    counts = torch.arange(15)
    torch.testing.assert_close(vmap(schedule)(counts), torch.stack([schedule(c) for c in counts]))


# --- vmap: sweeps and ensembles ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: O.sgd(lr, momentum=0.9, nesterov=True),
        lambda lr: O.adam(lr, weight_decay=0.01),
        lambda lr: O.rmsprop(lr, centered=True, momentum=0.5),
        lambda lr: O.chain(O.clip_by_global_norm(0.5), O.adamw(lr)),
        lambda lr: O.adamw(O.warmup_cosine_decay_schedule(0.0, lr, 3, 10)),
    ],
    ids=["sgd", "adam", "rmsprop", "clip_adamw", "adamw_schedule"],
)
def test_vmap_learning_rate_sweep_equals_separate_runs(make: Callable) -> None:
    lrs = torch.tensor([0.003, 0.01, 0.03, 0.1])
    separate = [run_funcmtl(make(float(lr)), steps=10) for lr in lrs]

    def step(params, state, lr):
        updates, state = make(lr).update(grad(loss_fn)(params), state, params)
        return O.apply_updates(params, updates), state

    params = fm.tree.stack([mlp_params()] * len(lrs))
    state = fm.tree.stack([make(float(lr)).init(mlp_params()) for lr in lrs])
    for _ in range(10):
        params, state = vmap(step)(params, state, lrs)
    for member, expected in zip(fm.tree.unstack(params), separate, strict=True):
        assert max_abs_diff(member, expected) <= 1e-6
    assert max_abs_diff(separate[0], separate[-1]) > 1e-3  # the sweep members really differ


@pytest.mark.parametrize("name", ["sgd_momentum", "adamw_cosine", "rmsprop_all"])
def test_init_under_vmap_equals_stacked_inits(name: str) -> None:
    opt = CASES[name][0]()
    members = [fm.tree.scale(mlp_params(), k) for k in range(3)]
    batched = vmap(opt.init)(fm.tree.stack(members))
    stacked = fm.tree.stack([opt.init(p) for p in members])
    fm.tree.check_same_structure([batched, stacked])
    for x, y in zip(fm.tree.leaves(batched), fm.tree.leaves(stacked), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)


def test_clip_by_global_norm_under_vmap_is_per_member() -> None:
    grads = {"a": torch.tensor([[0.3, 0.4], [30.0, 40.0]]), "b": torch.tensor([[0.0], [0.0]])}
    clip = O.clip_by_global_norm(1.0)
    out, _ = vmap(clip.update)(grads, O.EmptyState())
    torch.testing.assert_close(out["a"][0], torch.tensor([0.3, 0.4]))  # norm 0.5: kept
    torch.testing.assert_close(out["a"][1], torch.tensor([0.6, 0.8]))  # norm 50: to 1


def test_grad_through_update_is_the_hypergradient() -> None:
    params = mlp_params()
    grads = grad(loss_fn)(params)
    state = O.sgd(0.1).init(params)

    def loss_after_step(lr):
        updates, _ = O.sgd(lr).update(grads, state, params)
        return loss_fn(O.apply_updates(params, updates))

    hypergrad = grad(loss_after_step)(torch.tensor(0.1))
    # d/dlr L(p - lr·g) = -∇L(p - lr·g)·g
    moved = {k: params[k] - 0.1 * grads[k] for k in params}
    expected = -fm.tree.dot(grad(loss_fn)(moved), grads)
    torch.testing.assert_close(hypergrad, expected)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [-0.1, 0.0, float("nan")])
def test_non_positive_learning_rate(lr: float) -> None:
    for make in (O.sgd, O.adam, O.adamw, O.rmsprop):
        with pytest.raises(ValueError, match=r"`learning_rate` must be a positive number") as e:
            make(lr)
        assert f"got {lr!r}." in str(e.value) and "schedule" in str(e.value)


def test_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match=r"`b1` must be a number in \[0, 1\).*got 1\.0\."):
        O.adam(1e-3, b1=1.0)
    with pytest.raises(ValueError, match=r"`momentum` must be a non-negative number.*got -0\.5"):
        O.rmsprop(1e-3, momentum=-0.5)
    with pytest.raises(ValueError, match=r"`learning_rate` .* got a tensor of shape \(2,\)"):
        O.sgd(torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"`nesterov=True` needs a momentum"):
        O.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"`step_size` must be an integer ≥ 1; got 0\."):
        O.step_decay_schedule(0.1, 0)
    with pytest.raises(TypeError, match=r"`weight_decay` must be"):
        O.adamw(0.1, weight_decay="0.1")


def test_mismatched_update_structure() -> None:
    opt = O.adam(1e-3)
    state = opt.init({"w": torch.zeros(2), "b": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"scale_by_adam") as e:
        opt.update({"w": torch.zeros(2)}, state)
    assert "missing leaves" in str(e.value) and "['b']" in str(e.value)
    opt = O.sgd(0.1, momentum=0.9)
    state = opt.init({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected leaves .*\['extra'\]"):
        opt.update({"w": torch.zeros(2), "extra": torch.zeros(1)}, state)
    with pytest.raises(ValueError, match=r"needs the current params; got params=None"):
        O.add_decayed_weights(0.1).update({"w": torch.zeros(2)}, O.EmptyState())


def test_partition_unknown_or_missing_label() -> None:
    params = {"trunk.w": torch.zeros(2), "heads.0.w": torch.zeros(1)}
    transforms = {"trunk": O.sgd(0.1), "heads": O.sgd(1.0)}
    opt = O.partition(transforms, lambda name: name.split(".")[0].rstrip("s"))
    with pytest.raises(ValueError, match=r"keys of `transforms` \['heads', 'trunk'\]") as e:
        opt.init(params)
    assert "unknown labels [\"'head'\"]" in str(e.value) and "heads.0.w" in str(e.value)
    opt = O.partition(transforms, {"trunk.w": "trunk"})
    with pytest.raises(ValueError, match=r"`labels`.*missing leaves") as e:
        opt.init(params)
    assert "heads.0.w" in str(e.value)


@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_tensor_hyperparameters_outside_their_range_are_refused_like_numbers(value) -> None:
    lr = torch.tensor(value)
    for make in (O.sgd, O.adam, O.adamw, O.rmsprop):
        with pytest.raises(ValueError, match=r"`learning_rate` must be a positive number") as e:
            make(lr)
        assert f"got {lr!r}." in str(e.value)
    with pytest.raises(ValueError, match=r"`b1` must be a number in \[0, 1\).*got tensor\(1\.5"):
        O.adam(1e-3, b1=torch.tensor(1.5))
    with pytest.raises(ValueError, match=r"`max_norm` must be a positive number"):
        O.clip_by_global_norm(torch.tensor(value))
    # In range, a tensor is taken as it is; under vmap (a sweep) values are not read.
    O.adam(torch.tensor(1e-3), b1=torch.tensor(0.9))
    params = {"w": torch.ones(3)}
    lrs = torch.tensor([0.1, 0.2])
    moved = torch.func.vmap(lambda r: O.apply_updates(
        params, O.sgd(r).update(params, O.sgd(r).init(params))[0]))(lrs)
    torch.testing.assert_close(moved["w"], 1.0 - lrs[:, None].expand(2, 3))
