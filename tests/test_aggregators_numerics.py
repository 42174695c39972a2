"""Aggregators on extreme inputs and with tensor options (issue 10, items 9 and 18).

References are float64 recomputations of the same method on the same (rounded) gradients, and
for the options the method built with the equal Python number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import funcmtl as fm
from funcmtl import aggregators as agg

KEY = fm.random.key(5)
WEIGHTINGS = [n for n in agg.names() if n not in ("mean", "sum", "graddrop")]
# A 3 × 3 Jacobian whose rows conflict, and a 4 × 6 one.
J3 = fm.random.normal(fm.random.key(3), (3, 3), dtype=torch.float64)
J4 = fm.random.normal(fm.random.key(4), (4, 6), dtype=torch.float64)

pytestmark = pytest.mark.usefixtures("one_thread")  # the solvers' tiny LAPACK calls


def _direction(aggregator, grads: torch.Tensor) -> torch.Tensor:
    return aggregator.update(grads, aggregator.init(len(grads)), key=KEY)[0]


# ----------------------------------------------------------------------------------------
# Item 18: large, tiny and non-finite gradients
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, scale",
    [(torch.float16, 1e4), (torch.float32, 1e19), (torch.float32, 1e-22)],
    ids=["float16-1e4", "float32-1e19", "float32-1e-22"],
)
@pytest.mark.parametrize("name", WEIGHTINGS)
def test_large_and_tiny_finite_gradients(name: str, dtype: torch.dtype, scale: float) -> None:
    """The Gramian neither overflows nor underflows: the direction is that of the same
    (rounded) gradients in float64, to the precision of the input dtype."""
    aggregator = agg.get(name)
    grads = (J3 * scale).to(dtype)
    expected = _direction(aggregator, grads.double())
    got = _direction(aggregator, grads)
    assert got.dtype == dtype
    error = ((got.double() - expected).norm() / expected.norm()).item()
    assert error < 30 * torch.finfo(dtype).eps, f"{error:.1e}"


def test_pcgrad_in_float16_under_loss_scaling() -> None:
    """The issue's figures: [3000, -10000, 35008] before, about [-3939, -9073, 42536] now."""
    grads = (J3 * 1e4).half()
    got = _direction(agg.pcgrad(), grads).double()
    expected = _direction(agg.pcgrad(), grads.double())
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=0.0)


def test_gramian_is_exact_for_huge_and_tiny_gradients() -> None:
    """Exact to the result's rounding when ``G`` fits in its dtype (the gradients', at least
    float32), and in float64 for any finite float32 gradients."""
    cases = [(torch.float16, 1e4, None), (torch.float32, 1e15, None), (torch.float32, 1e-17, None)]
    cases += [(torch.float32, 1e19, torch.float64), (torch.float32, 1e-22, torch.float64)]
    for dtype, scale, result in cases:
        grads = (J4 * scale).to(dtype)
        gram = agg.gramian(grads, result)
        assert gram.dtype == (result or torch.promote_types(dtype, torch.float32))
        reference = grads.double() @ grads.double().T
        error = ((gram.double() - reference).abs().max() / reference.abs().max()).item()
        assert error < 1e-6, f"{dtype} {scale}: {error:.1e}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", WEIGHTINGS)
def test_non_finite_gradients_give_nan_and_keep_the_state(name: str, bad: float) -> None:
    """No misleading LinAlgError and no finite weights: NaN, and the state is left unchanged
    (a loss scaler can skip the step)."""
    aggregator = agg.get(name)
    grads = J4.clone()
    grads[1, 2] = bad
    state = aggregator.init(4)
    direction, new_state = aggregator.update(grads, state, key=KEY)
    assert torch.isnan(direction).all()
    gram = torch.eye(4, dtype=torch.float64)
    gram[0, 1] = gram[1, 0] = bad
    weights, weights_state = aggregator.weights(gram, state, key=KEY)
    assert torch.isnan(weights).all()
    for kept in (new_state, weights_state):
        for a, b in zip(fm.tree.leaves(kept), fm.tree.leaves(state), strict=True):
            assert torch.equal(a, b)


def test_a_non_finite_member_does_not_spoil_a_vmap_batch() -> None:
    aggregator = agg.upgrad()
    batch = torch.stack([J4, J4.clone().index_fill_(1, torch.tensor([0]), float("inf"))])
    out = torch.func.vmap(lambda j: aggregator.update(j, None)[0])(batch)
    torch.testing.assert_close(out[0], _direction(aggregator, J4), rtol=1e-9, atol=1e-12)
    assert torch.isnan(out[1]).all()


# ----------------------------------------------------------------------------------------
# Item 9: 0-dim tensor options, also batched by vmap
# ----------------------------------------------------------------------------------------

OPTIONS = [
    ("cagrad", "c", [0.0, 0.4, 1.5]),
    ("nash_mtl", "max_norm", [0.0, 0.3, 10.0]),
    ("gradvac", "beta", [0.2, 1.0]),
    ("graddrop", "leak", [0.0, 0.3]),
    ("upgrad", "reg_eps", [0.0, 1e-4]),
    ("dualproj", "reg_eps", [0.0, 1e-4]),
    ("imtl_g", "rtol", [1e-10, 0.5]),
    ("aligned_mtl", "rtol", [1e-10, 0.5]),
    ("config", "rtol", [1e-10, 0.5]),
]


@pytest.mark.parametrize("name, option, values", OPTIONS, ids=[f"{n}-{o}" for n, o, _ in OPTIONS])
def test_tensor_options_equal_numbers_eagerly_and_under_vmap(name, option, values) -> None:
    expected = torch.stack([_direction(agg.get(name, **{option: v}), J4) for v in values])
    eager = torch.stack(
        [
            _direction(agg.get(name, **{option: torch.tensor(v, dtype=torch.float64)}), J4)
            for v in values
        ]
    )
    torch.testing.assert_close(eager, expected, rtol=1e-9, atol=1e-12)

    def one(value: torch.Tensor) -> torch.Tensor:  # a sweep: one aggregator per member
        return _direction(agg.get(name, **{option: value}), J4)

    swept = torch.func.vmap(one)(torch.tensor(values, dtype=torch.float64))
    # Batched LAPACK calls and the branch-free path round differently.
    torch.testing.assert_close(swept, expected, rtol=1e-6, atol=1e-7)


def test_tensor_options_are_checked_like_numbers() -> None:
    with pytest.raises(ValueError, match=r"`c` must be a non-negative number or a 0-dim tensor; "
                       r"got tensor\(-1\.\)"):
        agg.get("cagrad", c=torch.tensor(-1.0))
    with pytest.raises(ValueError, match=r"`beta` must be .* 0-dim tensor; got a tensor of shape"):
        agg.gradvac(beta=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`max_norm` must be a non-negative number"):
        agg.nash_mtl(max_norm=torch.tensor(float("nan")))


def test_cagrad_with_a_tensor_c_matches_the_paper_weights() -> None:
    """The issue's call: ``get("cagrad", c=torch.tensor(0.4))`` works, and d is in the ball."""
    jac = J4.numpy()
    d = _direction(agg.get("cagrad", c=torch.tensor(0.4), rescale=0), J4).numpy()
    g0 = jac.mean(0)
    assert np.linalg.norm(d - g0) <= 0.4 * np.linalg.norm(g0) * (1 + 1e-7)
