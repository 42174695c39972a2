"""Loss weightings: every method against an independent float64 re-computation, plus the
shared contract (shapes, vmap over a batch of states, pytree states, error messages)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import funcmtl as fm
from funcmtl import weightings

F64 = torch.float64
NAMES = [
    "equal",
    "uncertainty",
    "dwa",
    "rlw",
    "gradnorm",
    "famo",
    "imtl_l",
    "geometric_mean",
]
# Options that make each method's state move within a few calls.
OPTIONS = {
    "uncertainty": {"lr": 0.1},
    "dwa": {"period": 2},
    "gradnorm": {"lr": 0.05},
    "famo": {"lr": 0.1},
    "imtl_l": {"lr": 0.1},
}


def _make(name: str) -> weightings.Weighting:
    return weightings.get(name, **OPTIONS.get(name, {}))


def _losses(seed: int, steps: int, tasks: int) -> torch.Tensor:
    """Positive, decreasing-ish loss traces ``(steps, tasks)``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(tasks, generator=g, dtype=F64) * 2 + 0.5
    decay = torch.rand(steps, tasks, generator=g, dtype=F64) * 0.3 + 0.8
    return base * torch.cumprod(decay, dim=0)


def _grad_norms(seed: int, steps: int, tasks: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.rand(steps, tasks, generator=g, dtype=F64) * 3 + 0.1


def _call(wt, losses, state, key, grad_norms):
    return wt.weights(losses, state, key=key, grad_norms=grad_norms)


# ---------------------------------------------------------------- registry


def test_names_and_descriptions():
    assert weightings.names() == NAMES
    for name in NAMES:
        method = weightings.method(name)
        assert method.name == name and method.factory is getattr(weightings, name)
        assert method.factory.__name__ == name
        assert method.summary and "\n" not in method.summary
        assert re.search(r", \d{4}\. https://\S+$", method.reference)  # "Authors, Title, Year. URL"
        assert weightings.describe(name) == f"{method.summary} [{method.reference}]"


def test_options_come_from_the_factory_signature():
    assert weightings.options("dwa") == {"temperature": 2.0, "period": 100}
    assert weightings.options("equal") == {}


def test_get_passes_options():
    wt = weightings.get("uncertainty", lr=0.5)
    w, state = wt.weights(torch.tensor([2.0, 2.0]), wt.init(2))
    torch.testing.assert_close(state.log_variance, torch.tensor([0.5, 0.5]))  # 0 − 0.5(1 − 2)


def test_unknown_name_lists_valid_names():
    message = (
        r"`name` must be one of the known loss weightings \(equal, uncertainty, dwa.*; "
        r"got 'kendall'\."
    )
    for lookup in (weightings.get, weightings.method, weightings.options, weightings.describe):
        with pytest.raises(ValueError, match=message):
            lookup("kendall")


def test_unknown_option_lists_valid_options():
    message = r"^Loss weighting 'dwa' has no option 'temp'; its options are: temperature, period\.$"
    with pytest.raises(ValueError, match=message):
        weightings.get("dwa", temp=2.0)
    with pytest.raises(ValueError, match="'equal' has no option 'lr'; its options are: none"):
        weightings.get("equal", lr=0.1)


# ---------------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_finite(name):
    wt = _make(name)
    state = wt.init(3)
    key = fm.random.key(0)
    for t, losses in enumerate(_losses(0, 6, 3).float()):
        w, state = _call(wt, losses, state, fm.random.fold_in(key, t), losses + 1)
        assert w.shape == (3,) and w.dtype == torch.float32
        assert torch.isfinite(w).all() and (w > 0).all()
    # Weights are constants even when the losses carry a graph.
    losses = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    w, state = _call(wt, losses * 2, state, key, torch.ones(3))
    assert not w.requires_grad
    assert not any(leaf.requires_grad for leaf in fm.tree.leaves(state))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_five_states_equals_one_by_one(name):
    """K = 5 members, each with its own losses, state and key, over 6 calls."""
    wt, members, steps, tasks = _make(name), 5, 6, 3
    losses = torch.stack([_losses(k, steps, tasks) for k in range(members)], dim=1)
    norms = torch.stack([_grad_norms(k, steps, tasks) for k in range(members)], dim=1)
    keys = fm.random.split(fm.random.key(7), members * steps).reshape(steps, members, 2)

    solo_states = [wt.init(tasks, dtype=F64) for _ in range(members)]
    solo_w = []
    for t in range(steps):
        row = []
        for k in range(members):
            w, solo_states[k] = _call(wt, losses[t, k], solo_states[k], keys[t, k], norms[t, k])
            row.append(w)
        solo_w.append(torch.stack(row))

    batched = torch.func.vmap(lambda x, s, k, g: _call(wt, x, s, k, g))
    state = fm.tree.stack([wt.init(tasks, dtype=F64) for _ in range(members)])
    for t in range(steps):
        w, state = batched(losses[t], state, keys[t], norms[t])
        torch.testing.assert_close(w, solo_w[t], rtol=1e-12, atol=1e-12)
    expected = fm.tree.stack(solo_states)
    for got, want in zip(fm.tree.leaves(state), fm.tree.leaves(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if fm.tree.leaves(state):
        member = fm.tree.unstack(state)[3]
        assert fm.tree.structure(member) == fm.tree.structure(solo_states[3])


@pytest.mark.parametrize("name", NAMES)
def test_bad_losses_shape(name):
    wt = _make(name)
    state = wt.init(3)
    with pytest.raises(ValueError, match=r"`losses` must have shape \(T,\).*got shape \(2, 3\)"):
        _call(wt, torch.ones(2, 3), state, fm.random.key(0), torch.ones(3))
    with pytest.raises(ValueError, match="`losses` must be floating point"):
        _call(wt, torch.ones(3, dtype=torch.int64), state, fm.random.key(0), torch.ones(3))


@pytest.mark.parametrize("name", ["uncertainty", "dwa", "gradnorm", "famo", "imtl_l"])
def test_losses_must_match_state(name):
    wt = _make(name)
    with pytest.raises(ValueError, match=r"shape \(T,\)=\(3,\) as the state.*got shape \(4,\)"):
        _call(wt, torch.ones(4), wt.init(3), None, torch.ones(4))


@pytest.mark.parametrize("name", NAMES)
def test_bad_num_tasks(name):
    with pytest.raises(ValueError, match="`num_tasks` must be a positive integer; got 0"):
        _make(name).init(0)


def test_gradnorm_needs_grad_norms():
    wt = weightings.gradnorm()
    with pytest.raises(ValueError, match="`gradnorm` needs the per-task gradient norms"):
        wt.weights(torch.ones(3), wt.init(3))
    with pytest.raises(ValueError, match=r"`grad_norms` must have shape \(T,\)=\(3,\); got \(2,\)"):
        wt.weights(torch.ones(3), wt.init(3), grad_norms=torch.ones(2))


def test_rlw_needs_key():
    wt = weightings.rlw()
    with pytest.raises(ValueError, match="`rlw` is randomised: pass `key=`"):
        wt.weights(torch.ones(3), wt.init(3))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("dwa", {"period": 0}, "`period` must be a positive integer"),
        ("dwa", {"temperature": -1.0}, "`temperature` must be a positive number"),
        ("uncertainty", {"lr": 0.0}, "`lr` must be a positive number"),
        ("gradnorm", {"alpha": -0.5}, "`alpha` must be a non-negative number"),
        ("famo", {"gamma": -1.0}, "`gamma` must be a non-negative number"),
        ("famo", {"optimizer": "sgdm"}, "`optimizer` must be 'adam' or 'sgd'; got 'sgdm'"),
    ],
)
def test_bad_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        weightings.get(name, **options)


# ---------------------------------------------------------------- per-method references


def test_equal():
    wt = weightings.equal()
    w, state = wt.weights(torch.tensor([0.1, 5.0, 3.0]), wt.init(3))
    assert torch.equal(w, torch.ones(3)) and state == ()


def _sgd_on(objective, param: torch.Tensor, losses: torch.Tensor, lr: float) -> torch.Tensor:
    """One SGD step of torch.autograd on ``objective(param, losses)`` wrt ``param``."""
    p = param.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(p, losses), p)
    return (p - lr * grad).detach()


def test_uncertainty_is_sgd_on_kendall_objective():
    lr, wt = 0.1, weightings.uncertainty(lr=0.1, init_log_variance=-0.5)
    state = wt.init(3, dtype=F64)
    s = torch.full((3,), -0.5, dtype=F64)
    for losses in _losses(1, 8, 3):
        w, state = wt.weights(losses, state)
        torch.testing.assert_close(w, torch.exp(-s), rtol=1e-14, atol=0)  # w from s before the step
        s = _sgd_on(lambda p, x: (torch.exp(-p) * x + p).sum(), s, losses, lr)
        torch.testing.assert_close(state.log_variance, s, rtol=1e-14, atol=1e-15)


def test_uncertainty_converges_to_log_loss():
    """At the fixed point of Σ e^{−s}L + s, s = log L (the regression form's minimiser)."""
    wt = weightings.uncertainty(lr=0.5)
    state = wt.init(2, dtype=F64)
    losses = torch.tensor([0.2, 3.0], dtype=F64)
    for _ in range(200):
        _, state = wt.weights(losses, state)
    torch.testing.assert_close(state.log_variance, torch.log(losses))


def test_imtl_l_is_sgd_on_its_objective():
    lr, wt = 0.1, weightings.imtl_l(lr=0.1)
    state = wt.init(3, dtype=F64)
    s = torch.zeros(3, dtype=F64)
    for losses in _losses(2, 8, 3):
        w, state = wt.weights(losses, state)
        torch.testing.assert_close(w, torch.exp(s), rtol=1e-14, atol=0)
        s = _sgd_on(lambda p, x: (torch.exp(p) * x - p).sum(), s, losses, lr)
        torch.testing.assert_close(state.log_scale, s, rtol=1e-14, atol=1e-15)
    # At the fixed point every scaled loss e^{s}L equals 1.
    losses = torch.tensor([0.2, 3.0, 40.0], dtype=F64)
    for _ in range(300):
        w, state = wt.weights(losses, state)
    torch.testing.assert_close(w * losses, torch.ones(3, dtype=F64))


def test_geometric_mean_gradient():
    """``Jᵀ w`` equals autograd's gradient of ``(Π Lₜ(θ))^{1/T}`` wrt θ."""
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(5, dtype=F64, generator=g, requires_grad=True)
    a = torch.randn(4, 5, dtype=F64, generator=g)
    b = torch.rand(4, dtype=F64, generator=g) + 0.1

    def task_losses(th):
        return (a @ th) ** 2 + b

    losses = task_losses(theta)
    (expected,) = torch.autograd.grad(losses.prod() ** (1 / 4), theta)
    jacobian = torch.autograd.functional.jacobian(task_losses, theta.detach())  # (T, P)
    wt = weightings.geometric_mean()
    w, _ = wt.weights(losses.detach(), wt.init(4))
    torch.testing.assert_close(jacobian.T @ w, expected, rtol=1e-12, atol=1e-14)
    # Many large losses: Π L overflows float64, the weights stay exact.
    exponents = torch.arange(60, dtype=F64)  # Π 10^k = 10^1770; GM = 10^29.5
    w, _ = wt.weights(10.0**exponents, wt.init(60))
    torch.testing.assert_close(w, 10.0 ** (29.5 - exponents) / 60, rtol=1e-12, atol=0)


def test_dwa_hand_computed():
    """period = 2 calls; 3 complete periods of given losses, then the weights of period 3."""
    temperature = 2.0
    wt = weightings.dwa(temperature=temperature, period=2)
    trace = [  # two tasks, two calls per period
        (4.0, 2.0), (2.0, 2.0),  # period 0: means (3, 2)
        (2.0, 1.0), (1.0, 1.0),  # period 1: means (1.5, 1)
        (1.2, 0.9), (0.6, 0.9),  # period 2: means (0.9, 0.9)
        (0.5, 0.5),              # first call of period 3
    ]  # fmt: skip
    state = wt.init(2, dtype=F64)
    got = []
    for row in trace:
        w, state = wt.weights(torch.tensor(row, dtype=F64), state)
        got.append(w.tolist())
    # Periods 0 and 1: no two averages yet.
    assert got[:4] == [[1.0, 1.0]] * 4

    def dwa_weights(r):
        e = [math.exp(x / temperature) for x in r]
        return [2 * x / sum(e) for x in e]

    # Period 2 uses r = L(1)/L(0) = (1.5/3, 1/2) = (0.5, 0.5): equal ratios, weights 1.
    np.testing.assert_allclose(got[4], [1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(got[5], [1.0, 1.0], rtol=1e-15)
    # Period 3 uses r = L(2)/L(1) = (0.9/1.5, 0.9/1) = (0.6, 0.9).
    expected = dwa_weights([0.6, 0.9])
    np.testing.assert_allclose(got[6], expected, rtol=1e-14)
    np.testing.assert_allclose(got[6], [0.92514031, 1.07485969], rtol=1e-8)


def test_rlw_distribution_and_key():
    wt = weightings.rlw()
    losses = torch.ones(4)
    key = fm.random.key(11)
    w1, _ = wt.weights(losses, wt.init(4), key=key)
    w2, _ = wt.weights(losses, wt.init(4), key=key)
    w3, _ = wt.weights(losses, wt.init(4), key=fm.random.key(12))
    assert torch.equal(w1, w2) and not torch.allclose(w1, w3)
    assert (w1 > 0).all()
    torch.testing.assert_close(w1.sum(), torch.tensor(1.0))

    # Over many keys, log(w₀/w₁) = λ̃₀ − λ̃₁ ~ N(0, 2): mean 0, variance 2.
    keys = fm.random.split(fm.random.key(5), 20_000)
    w, _ = torch.func.vmap(lambda k: wt.weights(torch.ones(2, dtype=F64), (), key=k))(keys)
    torch.testing.assert_close(w.sum(1), torch.ones(20_000, dtype=F64))
    diff = torch.log(w[:, 0] / w[:, 1])
    assert abs(diff.mean().item()) < 0.05
    assert abs(diff.var().item() - 2.0) < 0.1


def test_gradnorm_update_is_autograd_on_gradnorm_loss():
    alpha, lr, tasks = 1.5, 0.05, 3
    wt = weightings.gradnorm(alpha=alpha, lr=lr)
    state = wt.init(tasks, dtype=F64)
    w = torch.ones(tasks, dtype=F64)
    losses, norms = _losses(4, 10, tasks), _grad_norms(4, 10, tasks)
    initial = losses[0]
    for x, g in zip(losses, norms, strict=True):
        got_w, state = wt.weights(x, state, grad_norms=g)
        torch.testing.assert_close(got_w, w, rtol=1e-14, atol=0)

        p = w.clone().requires_grad_(True)
        weighted = p * g  # G⁽ⁱ⁾ = ‖∇ wᵢ Lᵢ‖
        ratio = x / initial
        r = ratio / ratio.mean()
        target = (weighted.mean() * r**alpha).detach()
        (grad,) = torch.autograd.grad((weighted - target).abs().sum(), p)
        w = w - lr * grad
        w = w * tasks / w.sum()
        torch.testing.assert_close(state.weights, w, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(state.initial_losses, initial)
    assert not torch.allclose(w, torch.ones(tasks, dtype=F64))


def _famo_reference(losses, lr, gamma, optimizer):
    """A float64 transcription of FAMO: the paper's Algorithm 1 (sgd), or the official code's
    ``torch.optim.Adam(lr, weight_decay=γ)`` step on the logits (adam)."""
    tasks = losses.shape[1]
    xi = torch.zeros(tasks, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=lr, weight_decay=gamma) if optimizer == "adam" else None
    out, prev = [], None
    for x in losses:
        if prev is not None:
            log_decrease = (prev + 1e-8).log() - (x + 1e-8).log()
            (delta,) = torch.autograd.grad(torch.softmax(xi, -1), xi, grad_outputs=log_decrease)
            if opt is None:  # ξ ← ξ − β(δ + γξ)
                with torch.no_grad():
                    xi -= lr * (delta + gamma * xi)
            else:
                opt.zero_grad()
                xi.grad = delta
                opt.step()
        # The official weighted loss Σ log(D) z / c, c = Σ z/D detached: w = ∂/∂ℓ.
        ell = x.clone().requires_grad_(True)
        z = torch.softmax(xi.detach(), -1)
        d = ell + 1e-8
        c = (z / d).sum().detach()
        (w,) = torch.autograd.grad((d.log() * z / c).sum(), ell)
        out.append((w, xi.detach().clone()))
        prev = x
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_famo_trace(optimizer):
    lr, gamma, steps = 0.3 if optimizer == "sgd" else 0.025, 0.01, 25
    losses = _losses(5, steps, 4)
    wt = weightings.famo(lr=lr, gamma=gamma, optimizer=optimizer)
    state = wt.init(4, dtype=F64)
    for t, (x, (w_ref, xi_ref)) in enumerate(
        zip(losses, _famo_reference(losses, lr, gamma, optimizer), strict=True)
    ):
        w, state = wt.weights(x, state)
        torch.testing.assert_close(state.logits, xi_ref, rtol=1e-10, atol=1e-13, msg=f"t={t}")
        torch.testing.assert_close(w, w_ref, rtol=1e-10, atol=1e-13, msg=f"t={t}")
        torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=F64))
    assert state.logits.abs().max() > 1e-3  # the logits did move


def test_float32_state_with_float64_losses():
    wt = weightings.uncertainty()
    state = wt.init(2)
    w, state = wt.weights(torch.ones(2, dtype=F64), state)
    assert w.dtype == F64 and state.log_variance.dtype == torch.float32
