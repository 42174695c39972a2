"""Functional modules: apply equals the module, init re-runs reset_parameters from a key."""

import copy

import pytest
import torch
from torch import nn

import funcmtl as fm


def mlp(dropout: float = 0.0, batchnorm: bool = False) -> nn.Module:
    layers = [nn.Linear(6, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def test_eval_apply_equals_the_module_and_grads_match_autograd():
    net = mlp(batchnorm=True)
    apply, params, buffers = fm.functional(net)
    x = torch.randn(10, 6)
    out, new_buffers = apply(params, buffers, x)
    assert torch.allclose(out, net.eval()(x))
    assert new_buffers is buffers
    grads = torch.func.grad(lambda p: apply(p, buffers, x)[0].square().sum())(params)
    net.zero_grad()
    net(x).square().sum().backward()
    for name, p in net.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6)


def test_train_mode_batchnorm_returns_updated_buffers_without_mutating_inputs():
    net = mlp(batchnorm=True)
    apply, params, buffers = fm.functional(net)
    before = {k: v.clone() for k, v in buffers.items()}
    x = torch.randn(10, 6)
    out, new_buffers = apply(params, buffers, x, train=True)
    reference = copy.deepcopy(net).train()
    assert torch.allclose(out, reference(x), atol=1e-6)
    for name, b in reference.named_buffers():
        assert torch.allclose(new_buffers[name].to(b.dtype), b)
        assert torch.equal(buffers[name], before[name])  # inputs untouched
    assert new_buffers["1.num_batches_tracked"] == 1


def test_dropout_is_a_pure_function_of_the_key():
    net = mlp(dropout=0.5)
    apply, params, buffers = fm.functional(net)
    x = torch.randn(4000, 6)
    k1, k2 = fm.random.split(fm.random.key(0))
    a, _ = apply(params, buffers, x, train=True, key=k1)
    b, _ = apply(params, buffers, x, train=True, key=k1)
    c, _ = apply(params, buffers, x, train=True, key=k2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Check rate and scaling on the hidden layer directly: inverted dropout keeps the mean.
    hidden_apply, hp, hb = fm.functional(nn.Sequential(nn.Dropout(0.3)))
    ones = torch.ones(200, 100)
    dropped, _ = hidden_apply(hp, hb, ones, train=True, key=k1)
    assert abs((dropped == 0).float().mean() - 0.3) < 0.01
    assert torch.allclose(dropped[dropped != 0], torch.full((), 1 / 0.7))
    # Eval mode has no dropout and needs no key.
    assert torch.allclose(apply(params, buffers, x)[0], net.eval()(x))


def test_dropout_under_vmap_equals_solo_calls_and_rate_can_be_a_tensor():
    net = mlp(dropout=0.4)
    apply, _, buffers = fm.functional(net)
    keys = fm.random.split(fm.random.key(1), 4)
    members = fm.tree.stack([fm.init(net, k)[0] for k in keys])
    rates = torch.tensor([0.0, 0.1, 0.4, 0.7])
    x = torch.randn(32, 6)

    def run(p, k, r):
        return apply(p, buffers, x, train=True, key=k, dropout_rate=r)[0]

    batched = torch.func.vmap(run)(members, keys, rates)
    for i, member in enumerate(fm.tree.unstack(members)):
        assert torch.allclose(batched[i], run(member, keys[i], rates[i]), atol=1e-6)
    # Rate 0 is the eval-mode function.
    assert torch.allclose(batched[0], apply(fm.tree.unstack(members)[0], buffers, x)[0], atol=1e-6)


def test_init_reruns_reset_parameters_seeded_from_the_key():
    k = fm.random.key(11)
    params, _ = fm.init(mlp(), k)
    torch.manual_seed(fm.random.key_to_seed(k))
    constructed = mlp()  # its constructor calls every reset_parameters in the same order
    for name, p in constructed.named_parameters():
        assert torch.equal(params[name], p.detach())
    again, _ = fm.init(mlp(), k)
    other, _ = fm.init(mlp(), fm.random.key(12))
    assert all(torch.equal(params[n], again[n]) for n in params)
    assert all(not torch.equal(params[n], other[n]) for n in params)


def test_init_honours_custom_reset_parameters_and_meta_modules():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(50, 50))

        def reset_parameters(self):
            nn.init.normal_(self.weight, std=3.0)

    params, _ = fm.init(Scaled(), fm.random.key(0))
    assert 2.8 < params["weight"].std() < 3.2
    with torch.device("meta"):
        meta_net = mlp()
    params, _ = fm.init(meta_net, fm.random.key(0), dtype=torch.float64)
    assert params["0.weight"].dtype == torch.float64 and not params["0.weight"].is_meta
    bound = 1 / 6**0.5  # nn.Linear's kaiming-uniform bound for fan_in 6
    assert params["0.weight"].abs().max() <= bound


def test_init_warns_about_parameters_no_reset_covers():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.warns(UserWarning, match=r"no reset_parameters covers \['scale'\]"):
        params, _ = fm.init(Raw(), fm.random.key(0))
    assert torch.equal(params["scale"], torch.ones(3))


def test_load_into_round_trips_and_checks_names_and_shapes():
    net = mlp(batchnorm=True)
    params, buffers = fm.init(net, fm.random.key(3))
    loaded = fm.load_into(net, params, buffers)
    for name, p in loaded.named_parameters():
        assert torch.equal(p, params[name])
    with pytest.raises(ValueError, match=r"missing \['0.bias'\]"):
        fm.load_into(net, {k: v for k, v in params.items() if k != "0.bias"})
    expected = r"`params\['0.bias'\]` must have shape \(16,\); got \(3,\)"
    with pytest.raises(ValueError, match=expected):
        fm.load_into(net, {**params, "0.bias": torch.zeros(3)})


def test_apply_rejects_wrong_params_and_missing_dropout_key():
    apply, params, buffers = fm.functional(mlp(dropout=0.2))
    with pytest.raises(ValueError, match=r"missing \['0.weight'\], unexpected \['w'\]"):
        apply({**{k: v for k, v in params.items() if k != "0.weight"}, "w": torch.zeros(1)},
              buffers, torch.zeros(2, 6))
    with pytest.raises(ValueError, match="needs `key=`"):
        apply(params, buffers, torch.zeros(2, 6), train=True)
    with pytest.raises(ValueError, match="must be a torch.nn.Module; got dict"):
        fm.functional({"a": 1})
