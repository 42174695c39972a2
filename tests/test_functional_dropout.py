"""Dropout that modules call themselves (F.dropout, attention dropout) is driven by the key."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import funcmtl as fm


class CallsDropout(nn.Module):
    """A module that calls F.dropout in its forward, as many user modules do."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return F.dropout(x, self.p, self.training) + 0 * self.linear(x).sum()


class Attention(nn.Module):
    """SDPA with dropout; with ``value`` the identity, the output is the dropped weights."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, q, k):
        eye = torch.eye(k.shape[-2]).expand(*k.shape[:-1], k.shape[-2])
        p = self.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, eye, dropout_p=p)


def encoder_layer():
    return nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.3, batch_first=True)


def test_transformer_encoder_layer_dropout_is_a_pure_function_of_the_key():
    net = encoder_layer()
    apply, params, buffers = fm.functional(net)
    x = torch.randn(3, 5, 16)
    k1, k2 = fm.random.split(fm.random.key(0))
    torch.manual_seed(0)
    a, _ = apply(params, buffers, x, train=True, key=k1)
    torch.manual_seed(1)  # torch's generator plays no part
    b, _ = apply(params, buffers, x, train=True, key=k1)
    c, _ = apply(params, buffers, x, train=True, key=k2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # Inverted dropout keeps the expectation: the mean over keys of the attention block's
    # output tends to the eval-mode output (the MLP block is nonlinear in its dropout, so
    # test attention alone).
    attention = nn.MultiheadAttention(16, 2, dropout=0.5, batch_first=True)
    apply, params, buffers = fm.functional(attention)
    keys = fm.random.split(fm.random.key(1), 2000)
    outputs = torch.func.vmap(
        lambda k: apply(params, buffers, x, x, x, train=True, key=k)[0][0]
    )(keys)
    expected = attention.eval()(x, x, x)[0]
    spread = outputs.std(0) / len(keys) ** 0.5
    assert ((outputs.mean(0) - expected).abs() <= 5 * spread + 1e-6).float().mean() > 0.99
    assert not torch.allclose(outputs[0], outputs[1])


def test_functional_dropout_has_the_rate_and_scaling_of_dropout():
    apply, params, buffers = fm.functional(CallsDropout(0.3))
    ones = torch.ones(300, 4)
    out, _ = apply(params, buffers, ones, train=True, key=fm.random.key(2))
    assert abs((out == 0).float().mean() - 0.3) < 0.03
    assert torch.allclose(out[out != 0], torch.full((), 1 / 0.7))
    assert torch.equal(apply(params, buffers, ones)[0], ones)  # eval: no dropout
    with pytest.raises(ValueError, match="needs `key=`"):
        apply(params, buffers, ones, train=True)


def test_attention_dropout_drops_the_attention_weights():
    apply, params, buffers = fm.functional(Attention(0.4))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 50, 8, generator=g), torch.randn(2, 3, 60, 8, generator=g)
    out, _ = apply(params, buffers, q, k, train=True, key=fm.random.key(3))
    weights = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1)
    kept = out != 0
    assert abs(1 - kept.float().mean() - 0.4) < 0.02
    torch.testing.assert_close(out[kept], (weights / 0.6)[kept])


def test_an_ensemble_of_encoder_layers_under_vmap_equals_solo_calls():
    net = encoder_layer()
    apply, _, buffers = fm.functional(net)
    keys = fm.random.split(fm.random.key(4), 3)
    members, _ = fm.ensemble.init_members(net, fm.random.key(5), 3)
    x = torch.randn(2, 5, 16)

    def run(p, k):
        return apply(p, buffers, x, train=True, key=k)[0]

    batched = torch.func.vmap(run, randomness="different")(members, keys)
    for i in range(3):
        torch.testing.assert_close(batched[i], run(fm.ensemble.member(members, i), keys[i]))
    assert not torch.allclose(batched[0], batched[1])


def test_alpha_dropout_keeps_zero_mean_and_unit_variance_and_rrelu_is_refused():
    apply, params, buffers = fm.functional(nn.Sequential(nn.AlphaDropout(0.3)))
    x = fm.random.normal(fm.random.key(6), (200_000,))
    key = fm.random.key(7)
    out, _ = apply(params, buffers, x, train=True, key=key)
    assert torch.equal(out, apply(params, buffers, x, train=True, key=key)[0])
    assert abs(out.mean()) < 0.01 and abs(out.var() - 1) < 0.01
    # Klambauer et al. 2017: a dropped unit is set to a·α' + b, α' = -λα of SELU.
    alpha = -1.0507009873554805 * 1.6732632423543772
    a = ((1 - 0.3) * (1 + 0.3 * alpha**2)) ** -0.5
    dropped = torch.isclose(out, torch.tensor(a * alpha - a * alpha * 0.3))
    assert abs(dropped.float().mean() - 0.3) < 0.01
    apply, params, buffers = fm.functional(nn.Sequential(nn.Linear(2, 2), nn.RReLU()))
    with pytest.raises(ValueError, match=r"F.rrelu \(nn.RReLU\) in training .* not from the key"):
        apply(params, buffers, torch.ones(3, 2), train=True, key=key)
    apply(params, buffers, torch.ones(3, 2))  # eval mode is deterministic: fine


def _noisy(x, p, training):
    return F.dropout(x, p, training)


class CallsDropoutThroughAHelper(nn.Module):
    """F.dropout reached through a module-level function the class's code does not name."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return _noisy(self.linear(x), 0.5, self.training)


class AddsTorchNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x) + 0.1 * torch.randn_like(x)


def test_dropout_through_a_helper_function_is_key_driven_too():
    apply, params, buffers = fm.functional(CallsDropoutThroughAHelper())
    x = torch.randn(64, 4)
    k1, k2 = fm.random.split(fm.random.key(0))
    a, _ = apply(params, buffers, x, train=True, key=k1)
    torch.manual_seed(123)
    b, _ = apply(params, buffers, x, train=True, key=k1)
    c, _ = apply(params, buffers, x, train=True, key=k2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    kept = a != 0
    assert 0.35 < kept.double().mean() < 0.65  # p = 0.5


def test_noise_from_torchs_generator_in_a_training_forward_is_refused():
    apply, params, buffers = fm.functional(AddsTorchNoise())
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="drew from torch's generator"):
        apply(params, buffers, x, train=True, key=fm.random.key(0))


class PlainCustomModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def test_a_custom_module_without_random_calls_trains_like_its_torch_forward():
    net = PlainCustomModule()
    apply, params, buffers = fm.functional(net)
    x = torch.randn(8, 4)
    out, _ = apply(params, buffers, x, train=True, key=fm.random.key(0))
    assert torch.equal(out, net(x))
    grads = torch.func.grad(lambda p: apply(p, buffers, x, train=True)[0].square().sum())(params)
    expected = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    for (name, _), g in zip(net.named_parameters(), expected, strict=True):
        torch.testing.assert_close(grads[name], g)


def test_dropout_of_rate_one_gives_zeros_like_torch():
    x = torch.randn(6, 4)
    for net in (nn.Sequential(nn.Dropout(1.0)), CallsDropout(1.0)):
        apply, params, buffers = fm.functional(net)
        out, _ = apply(params, buffers, x, train=True, key=fm.random.key(0))
        assert torch.equal(out, torch.zeros_like(x)), type(net).__name__
