"""Two tasks: the closed forms of ``aggregators/_two_tasks.py`` against independent references.

The references are those of ``test_aggregators_qp.py`` (float64 NumPy: every active set of the
QP, CAGrad's primal by bisection, Nash-MTL's ``α ∘ Gα = 1`` by Newton), on 2-task Jacobians of
every degenerate kind a closed form might get wrong: a zero gradient, two zero gradients, equal,
opposite, parallel gradients of different lengths, orthogonal, nearly parallel or opposite ones,
and norms spread over twelve orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_aggregators_qp import (
    _direction,
    _error,
    _weights,
    ref_cagrad,
    ref_dualproj,
    ref_mgda,
    ref_nash_alpha,
    ref_upgrad,
)
from torch.func import vmap

from funcmtl import aggregators, random
from funcmtl.aggregators._pcgrad import project_in_order, task_orders

pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    cases = {f"random_{i}": rng.standard_normal((2, 5)) for i in range(12)}
    cases |= {
        "zero_first": np.stack([np.zeros(5), b]),
        "zero_second": np.stack([a, np.zeros(5)]),
        "both_zero": np.zeros((2, 5)),
        "equal": np.stack([a, a]),
        "opposite": np.stack([a, -a]),
        "opposite_unequal": np.stack([a, -3 * a]),
        "parallel_unequal": np.stack([a, 0.25 * a]),
        "orthogonal": np.array([[1.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0]]),
        "near_parallel": np.stack([a, a + 1e-6 * b]),
        "near_opposite": np.stack([a, -a + 1e-6 * b]),
        "scales_1e4": np.stack([1e-4 * a, 1e4 * b]),
        "scales_1e6": np.stack([1e-6 * a, 1e6 * b]),
        "obtuse_scales": np.stack([1e3 * a, -a + b]),
    }
    return cases


PAIRS = _pairs()
# CAGrad's direction is unique unless 0 is in the hull (opposite gradients, a zero gradient).
# Norms 1e12 apart are beyond the float64 Gramian's reach (‖g_w‖ of the small task is below
# the floor that guards against a round-off ‖g_w‖); the QP methods still handle them.
UNIQUE_CAGRAD = [
    k for k in PAIRS if not ("zero" in k or k.startswith("opposite") or k == "scales_1e6")
]


@pytest.mark.parametrize("name,reference", [
    ("mgda", ref_mgda), ("upgrad", ref_upgrad), ("dualproj", ref_dualproj)])
def test_qp_closed_forms_equal_the_active_set_reference(name, reference) -> None:
    for case, jac in PAIRS.items():
        expected = reference(jac)
        for dtype, tolerance in [(torch.float64, 1e-9), (torch.float32, 1e-4)]:
            direction = _direction(aggregators.get(name), jac, dtype)
            if not jac.any():
                assert not direction.any(), case
                continue
            assert _error(direction, expected, jac) < tolerance, (case, dtype)


@pytest.mark.parametrize("c", [0.2, 0.5, 1.0, 2.0])
def test_cagrad_closed_form_equals_the_bisection_reference(c: float) -> None:
    for case in UNIQUE_CAGRAD:
        jac = PAIRS[case]
        direction = _direction(aggregators.cagrad(c=c, rescale=0), jac)
        expected = ref_cagrad(jac, c)
        g0 = jac.mean(0)
        assert np.linalg.norm(direction - g0) <= c * np.linalg.norm(g0) * (1 + 1e-9), case
        # The bisection's projections lose digits on norms 1e8 apart (at c = 2 it stops at a
        # worst-task value of 2.31 where the optimum, found in 60-digit arithmetic, is 2.7074):
        # there, the closed form must do at least as well; elsewhere it must equal it.
        unit = np.linalg.norm(jac, axis=1).max() ** 2
        assert (jac @ direction).min() >= (jac @ expected).min() - 1e-9 * unit, case
        if not case.startswith("scales"):
            assert _error(direction, expected, jac) < 1e-7, case


def test_cagrad_with_zero_in_the_hull_attains_the_optimum_in_the_ball() -> None:
    """Then every d of the ball with J d ≥ 0 is optimal (value 0 for c ≥ 1)."""
    for case in ["opposite", "opposite_unequal", "zero_first", "zero_second", "near_opposite"]:
        jac = PAIRS[case]
        for c in [0.5, 1.0, 2.0]:
            d = _direction(aggregators.cagrad(c=c, rescale=0), jac)
            g0 = jac.mean(0)
            unit = np.linalg.norm(jac, axis=1).max() ** 2
            assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6) + 1e-12, case
            best = (jac @ ref_cagrad(jac, c)).min()
            assert (jac @ d).min() >= best - 1e-7 * unit, (case, c)


def test_nash_closed_form_solves_g_alpha_equals_one_over_alpha() -> None:
    for case, jac in PAIRS.items():
        gram = jac @ jac.T
        if np.linalg.matrix_rank(gram, tol=1e-8 * np.abs(gram).max(initial=1)) < 2:
            continue  # no solution without the ridge
        alpha = _weights(aggregators.nash_mtl(max_norm=0), jac)
        np.testing.assert_allclose(alpha, ref_nash_alpha(gram), rtol=1e-8, err_msg=case)


def test_nash_closed_form_stays_finite_with_dependent_gradients() -> None:
    for case in ["equal", "opposite", "parallel_unequal", "zero_first", "both_zero"]:
        direction = _direction(aggregators.nash_mtl(), PAIRS[case])
        assert np.isfinite(direction).all() and np.linalg.norm(direction) <= 1 + 1e-9, case


def test_pcgrad_closed_form_equals_the_projection_loop_and_the_formula() -> None:
    key = random.key(3)
    for case, jac in PAIRS.items():
        gram = torch.tensor(jac @ jac.T)
        w = aggregators.pcgrad().weights(gram, None, key=key)[0]
        loop = project_in_order(gram, task_orders(key, 2))
        torch.testing.assert_close(w, loop, rtol=0, atol=0, msg=case)
        g0, g1 = jac
        expected = g0 + g1
        if g0 @ g1 < 0:
            inner = g0 @ g1
            expected = expected - inner * (g1 / max(g1 @ g1, 1e-300) + g0 / max(g0 @ g0, 1e-300))
        unit = np.linalg.norm(jac, axis=1).max()
        np.testing.assert_allclose(w.numpy() @ jac, expected, rtol=0, atol=1e-12 * unit,
                                   err_msg=case)


@pytest.mark.parametrize("name", ["mgda", "upgrad", "dualproj", "cagrad", "nash_mtl", "pcgrad"])
def test_vmap_over_pairs_equals_one_by_one(name: str) -> None:
    agg = aggregators.get(name)
    jacs = torch.tensor(np.stack(list(PAIRS.values())))
    keys = random.split(random.key(0), len(jacs))

    def one(jac, key):
        return agg.update(jac, agg.init(2, dtype=jac.dtype), key=key)[0]

    batched = vmap(one)(jacs, keys)
    for i, (jac, key) in enumerate(zip(jacs, keys, strict=True)):
        # Dependent gradients leave Nash-MTL's direction to round-off: units of max ‖g_i‖.
        unit = float(jac.norm(dim=1).max())
        torch.testing.assert_close(batched[i], one(jac, key), rtol=0, atol=1e-9 * unit)


def test_cagrad_closed_form_reaches_the_optimum_of_a_60_digit_solve() -> None:
    """Norms 1e8 apart, c = 2: CAGrad's dual minimised by ternary search in mpmath (60
    digits) gives the optimal worst-task value 2.70738203539358 at w₁ = 8.24607e-10."""
    jac = PAIRS["scales_1e4"]
    direction = _direction(aggregators.cagrad(c=2.0, rescale=0), jac)
    assert abs((jac @ direction).min() - 2.70738203539358) < 1e-3


def test_a_non_finite_gramian_still_checks_the_arguments() -> None:
    """Eager calls decide finiteness with one read; a NaN Gramian gives NaN weights and the
    state back, and a missing key is still an error (as under vmap)."""
    nan = torch.full((2, 2), float("nan"), dtype=torch.float64)
    w, state = aggregators.mgda().weights(nan, None)
    assert w.isnan().all() and state is None
    with pytest.raises(ValueError, match="pass `key=`"):
        aggregators.pcgrad().weights(nan, None)
