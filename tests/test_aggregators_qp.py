"""The QP-based aggregators (MGDA, UPGrad, DualProj, CAGrad, Nash-MTL) against exact references.

The references are float64 NumPy, written here and independent of the solvers (``_qp.py``,
``_cagrad_dual.py``, ``_nash_point.py``): QPs by enumerating every active set (``T ≤ 6``),
CAGrad by bisection on the level ``ν`` of its primal problem with exact polyhedral
projections, Nash-MTL by Newton's method on ``α ∘ Gα = 1``. Directions are compared in units
of the largest gradient norm; where the weights are not unique (dependent gradients) only the
direction is.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.func import vmap

from funcmtl.aggregators._base import Aggregator
from funcmtl.aggregators._cagrad import cagrad
from funcmtl.aggregators._dualproj import dualproj
from funcmtl.aggregators._mgda import mgda
from funcmtl.aggregators._nash_mtl import nash_mtl
from funcmtl.aggregators._qp import project_weights
from funcmtl.aggregators._upgrad import upgrad

RTOL64, RTOL32 = 1e-6, 1e-4  # direction error / max ‖g_i‖, float64 and float32 inputs


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------


def _jacobians() -> dict[str, np.ndarray]:
    """Small Jacobians (T ≤ 6) covering the cases the solvers must get exactly right."""
    rng = np.random.default_rng(0)
    cases = {
        f"random_{t}x{p}_{i}": rng.standard_normal((t, p))
        for i, (t, p) in enumerate([(2, 5), (3, 7), (4, 6), (5, 9), (6, 8), (6, 20)])
    }
    cases["scales_1e3"] = rng.standard_normal((4, 6)) * np.array([[1e-3], [1.0], [30.0], [1e1]])
    cases["rank_deficient_T>P"] = rng.standard_normal((5, 3))
    cases["rank_2_of_5"] = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 7))
    base = rng.standard_normal((3, 6))
    cases["duplicates"] = np.stack([base[0], base[1], base[0], base[2], base[1]])
    cases["zero_gradient"] = np.stack([base[0], np.zeros(6), base[1], base[2]])
    cases["conflicting_pair"] = np.array([[1.0, 0.2, 0.0], [-1.0, 0.1, 0.3], [0.2, 1.0, -0.1]])
    cases["opposite_pair"] = np.stack([base[0], -base[0], base[1]])
    cases["all_aligned"] = np.outer([0.5, 2.0, 1.0, 3.0], rng.standard_normal(5))
    cases["near_parallel"] = rng.standard_normal(8) + 1e-3 * rng.standard_normal((4, 8))
    return cases


JACOBIANS = _jacobians()
# Gradients in an open half-space (first coordinate > 0): 0 is not in their hull, so CAGrad's
# direction is unique even with T > P or repeated rows.
HALF_SPACE = {
    "random_2x5": np.abs(JACOBIANS["random_2x5_0"]) * [[1, -1, 1, 1, -1]],
    "random_4x6": JACOBIANS["random_4x6_2"] + [[3.0, 0, 0, 0, 0, 0]],
    "T>P": np.array([[1.0, 0.5], [1.0, -0.7], [0.5, 2.0], [2.0, 0.1]]),
    "duplicates": np.array([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.3, -1.0, 0.4], [1.0, 1.0, 1.0]]),
    "all_aligned": np.outer([0.5, 2.0, 1.0], [1.0, -2.0, 0.5]),
    "scales": np.array([[1e-2, 1e-2, 0.0], [1.0, -2.0, 1.0], [40.0, 30.0, -10.0]]),
}


def _direction(aggregator: Aggregator, jac: np.ndarray, dtype=torch.float64) -> np.ndarray:
    grads = torch.tensor(jac, dtype=dtype)
    direction, _ = aggregator.update(grads, aggregator.init(len(jac)))
    assert direction.dtype == dtype
    return direction.double().numpy()


def _weights(aggregator: Aggregator, jac: np.ndarray) -> np.ndarray:
    gram = torch.tensor(jac @ jac.T)
    return aggregator.weights(gram, aggregator.init(len(jac)))[0].numpy()


def _error(direction: np.ndarray, expected: np.ndarray, jac: np.ndarray) -> float:
    return np.linalg.norm(direction - expected) / np.linalg.norm(jac, axis=1).max()


# ----------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------


def ref_qp(gram: np.ndarray, lower: np.ndarray, simplex: bool) -> np.ndarray:
    """argmin ½ xᵀGx s.t. x ≥ lower [, 1ᵀx = 1]: every free set F, its equality-constrained
    KKT system by least squares, kept if primal and dual feasible; the least objective wins."""
    n, scale = len(lower), max(np.abs(gram).max(), 1e-300)
    best = None
    for size in range(1 if simplex else 0, n + 1):
        for free in map(list, itertools.combinations(range(n), size)):
            fixed = [i for i in range(n) if i not in free]
            rhs = -gram[np.ix_(free, fixed)] @ lower[fixed]
            matrix = gram[np.ix_(free, free)]
            if simplex:  # [G_FF −1; 1ᵀ 0] (x_F, ν) = (−G_FA l_A, 1 − 1ᵀl_A)
                matrix = np.block([[matrix, -np.ones((size, 1))], [np.ones((1, size)), 0.0]])
                rhs = np.r_[rhs, 1 - lower[fixed].sum()]
            solution = np.linalg.lstsq(matrix, rhs, rcond=None)[0]
            if np.abs(matrix @ solution - rhs).max(initial=0) > 1e-10 * max(scale, 1):
                continue
            x = lower.astype(float).copy()
            x[free] = solution[:size]
            multipliers = gram @ x - (solution[size] if simplex else 0.0)
            if (x - lower).min() < -1e-12 or multipliers[fixed].min(initial=0) < -1e-10 * scale:
                continue
            value = x @ gram @ x / 2
            if best is None or value < best[0] - 1e-13 * scale:
                best = (value, x)
    return best[1]


def ref_mgda(jac: np.ndarray) -> np.ndarray:
    return ref_qp(jac @ jac.T, np.zeros(len(jac)), simplex=True) @ jac


def ref_upgrad(jac: np.ndarray) -> np.ndarray:
    gram, t = jac @ jac.T, len(jac)
    return sum(ref_qp(gram, np.eye(t)[i] / t, simplex=False) for i in range(t)) @ jac


def ref_dualproj(jac: np.ndarray) -> np.ndarray:
    return ref_qp(jac @ jac.T, np.full(len(jac), 1 / len(jac)), simplex=False) @ jac


def ref_project(jac: np.ndarray, point: np.ndarray, level: float) -> np.ndarray | None:
    """The projection of ``point`` onto {d : J d ≥ level}, or None if that set is empty."""
    best = None
    for size in range(len(jac) + 1):
        for active in map(list, itertools.combinations(range(len(jac)), size)):
            rows = jac[active]
            lam = np.linalg.lstsq(rows @ rows.T, level - rows @ point, rcond=None)[0]
            d = point + lam @ rows
            tol = 1e-10 * (1 + abs(level))
            if size and np.abs(rows @ d - level).max() > tol:
                continue
            if (lam < -1e-12).any() or (jac @ d < level - tol).any():
                continue
            if best is None or np.linalg.norm(d - point) < np.linalg.norm(best - point):
                best = d
    return best


def ref_cagrad(jac: np.ndarray, c: float) -> np.ndarray:
    """max_d min_i g_iᵀd s.t. ‖d − g₀‖ ≤ c‖g₀‖: the largest level ν whose polyhedron
    {J d ≥ ν} comes within the radius of g₀ (bisection), then the projection onto it."""
    g0 = jac.mean(0)
    radius = c * np.linalg.norm(g0)
    low = (jac @ g0).min()  # g₀ itself reaches this level
    high = (jac @ g0 + radius * np.linalg.norm(jac, axis=1)).min()  # no d in the ball beats it
    for _ in range(80):
        middle = (low + high) / 2
        d = ref_project(jac, g0, middle)
        if d is not None and np.linalg.norm(d - g0) <= radius:
            low = middle
        else:
            high = middle
    return ref_project(jac, g0, low)


def ref_nash_alpha(gram: np.ndarray) -> np.ndarray:
    """α > 0 with α ∘ Gα = 1, by Newton's method on that system with step halving."""
    alpha = 1 / np.sqrt(np.diag(gram))

    def residual(a):
        return a * (gram @ a) - 1

    for _ in range(200):
        jacobian = np.diag(gram @ alpha) + alpha[:, None] * gram
        step = np.linalg.solve(jacobian, -residual(alpha))
        t = 1.0
        while (alpha + t * step <= 0).any() or (
            np.abs(residual(alpha + t * step)).max() > np.abs(residual(alpha)).max() and t > 1e-8
        ):
            t /= 2
        alpha = alpha + t * step
    assert np.abs(residual(alpha)).max() < 1e-12
    return alpha


# ----------------------------------------------------------------------------------------
# Against the references
# ----------------------------------------------------------------------------------------

REFERENCES = {
    "mgda": (mgda, ref_mgda),
    "upgrad": (upgrad, ref_upgrad),
    "dualproj": (dualproj, ref_dualproj),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_qp_methods_equal_the_active_set_reference(name: str) -> None:
    factory, reference = REFERENCES[name]
    for case, jac in JACOBIANS.items():
        expected = reference(jac)
        error = _error(_direction(factory(), jac), expected, jac)
        assert error < RTOL64, f"{name} on {case}: {error:.2e}"
        if case.startswith("random"):  # well conditioned: float32 in, float32 out
            error32 = _error(
                _direction(factory(), jac.astype(np.float32), torch.float32), expected, jac
            )
            assert error32 < RTOL32, f"{name} float32 on {case}: {error32:.2e}"


def test_full_rank_weights_equal_the_reference() -> None:
    """With linearly independent gradients the weights themselves are unique."""
    for case in ["random_3x7_1", "random_5x9_3", "scales_1e3", "conflicting_pair"]:
        jac = JACOBIANS[case]
        gram, t = jac @ jac.T, len(jac)
        expected = {
            "mgda": ref_qp(gram, np.zeros(t), True),
            "dualproj": ref_qp(gram, np.full(t, 1 / t), False),
            "upgrad": sum(ref_qp(gram, np.eye(t)[i] / t, False) for i in range(t)),
        }
        for name, w in expected.items():
            got = _weights(REFERENCES[name][0](), jac)
            np.testing.assert_allclose(got, w, rtol=1e-7, atol=1e-9 * np.abs(w).max())


def test_options_equal_the_reference() -> None:
    """MGDA on unit gradients; a preference vector; torchjd's reg_eps on G / tr(G)."""
    jac = JACOBIANS["scales_1e3"]
    norms = np.linalg.norm(jac, axis=1)
    expected = ref_mgda(jac / norms[:, None])
    assert _error(_direction(mgda(normalization="l2"), jac), expected, jac / norms.min()) < 1e-9
    pref = np.array([0.1, 0.4, 0.2, 0.3])
    gram = jac @ jac.T
    expected = ref_qp(gram, pref, simplex=False) @ jac
    got = _direction(dualproj(pref_vector=torch.tensor(pref)), jac)
    assert _error(got, expected, jac) < RTOL64
    regularised = gram / np.trace(gram) + 1e-4 * np.eye(4)
    expected = sum(ref_qp(regularised, np.eye(4)[i] / 4, False) for i in range(4)) @ jac
    assert _error(_direction(upgrad(reg_eps=1e-4), jac), expected, jac) < RTOL64


@pytest.mark.parametrize("c", [0.2, 0.5, 0.8])
def test_cagrad_equals_the_bisection_reference(c: float) -> None:
    for case, jac in HALF_SPACE.items():
        expected = ref_cagrad(jac, c)
        for rescale, divisor in [(0, 1.0), (1, 1 + c**2)]:
            got = _direction(cagrad(c=c, rescale=rescale), jac)
            error = _error(got * divisor, expected, jac)
            assert error < RTOL64, f"cagrad c={c} on {case}: {error:.2e}"
        got32 = _direction(cagrad(c=c, rescale=0), jac.astype(np.float32), torch.float32)
        assert _error(got32, expected, jac) < RTOL32


def test_cagrad_solves_its_dual_for_many_tasks() -> None:
    """T = 40: the weights satisfy the dual's optimality conditions on the simplex."""
    rng = np.random.default_rng(3)
    correlated = rng.standard_normal(60) + 0.3 * rng.standard_normal((40, 60))
    for jac in [rng.standard_normal((40, 100)), correlated]:
        c = 0.5
        t = len(jac)
        gram = jac @ jac.T
        a = _weights(cagrad(c=c, rescale=0), jac) - 1 / t  # = r w / ‖g_w‖
        radius = c * np.linalg.norm(jac.mean(0))
        np.testing.assert_allclose(np.linalg.norm(a @ jac), radius, rtol=1e-9)
        w = a / a.sum()  # the dual's weights, on the simplex
        assert w.min() >= -1e-12
        gradient = gram.mean(1) + radius * gram @ w / np.sqrt(w @ gram @ w)
        gap = w @ gradient - gradient.min()  # Frank–Wolfe gap: 0 exactly at the optimum
        assert gap < 1e-9 * np.abs(gradient).max()


@pytest.mark.parametrize("num_tasks", [40, 64])
def test_upgrad_projections_satisfy_kkt_for_many_tasks(num_tasks: int) -> None:
    """T projections ``v_i = argmin_{v ≥ e_i/T} vᵀGv`` at once (UPGrad's subproblems, solved by
    the shared-Gramian active-set path with its interior-point fallback): KKT conditions
    ``Gv ≥ 0, v ≥ l, (Gv)ⱼ(vⱼ − lⱼ) = 0`` in float64, and ``vmap`` gives the same result."""
    rng = np.random.default_rng(num_tasks)
    signs = rng.choice([-1.0, 1.0], size=(num_tasks, 1))
    conflicting = signs * rng.standard_normal(300) + 0.7 * rng.standard_normal((num_tasks, 300))
    scaled = rng.standard_normal((num_tasks, 200)) * np.logspace(-3, 2, num_tasks)[:, None]
    low_rank = conflicting[:, :20]  # T > P: the Gramian has rank 20
    lower = torch.eye(num_tasks, dtype=torch.float64) / num_tasks
    for case, jac in {"conflicting": conflicting, "scaled": scaled, "low_rank": low_rank}.items():
        gram = jac @ jac.T
        v = project_weights(torch.tensor(gram), lower).numpy()
        multiplier = v @ gram  # row i: G v_i (G symmetric)
        slack = v - lower.numpy()
        unit = np.linalg.norm(jac, axis=1).max() * np.linalg.norm(jac, axis=1)  # ‖g_max‖‖g_j‖
        assert slack.min() >= -1e-12, case
        assert (multiplier / unit).min() >= -1e-8, case
        np.testing.assert_allclose(multiplier * slack / unit, 0.0, atol=1e-9, err_msg=case)
        if case != "low_rank":  # unique solutions: batched and single solves agree to round-off
            batched = vmap(lambda g: project_weights(g, lower))(torch.tensor(gram)[None])[0]
            np.testing.assert_allclose(batched.numpy(), v, rtol=1e-9, atol=1e-12, err_msg=case)


def test_nash_mtl_solves_g_alpha_equals_one_over_alpha() -> None:
    for case in [
        "random_2x5_0",
        "random_4x6_2",
        "random_6x20_5",
        "scales_1e3",
        "conflicting_pair",
        "near_parallel",
    ]:
        jac = JACOBIANS[case]
        gram = jac @ jac.T
        alpha = _weights(nash_mtl(max_norm=0), jac)
        assert (alpha > 0).all()
        np.testing.assert_allclose(alpha * (gram @ alpha), 1.0, rtol=1e-7)
        np.testing.assert_allclose(alpha, ref_nash_alpha(gram), rtol=1e-7)
        # Claim 3.1: g_iᵀd = 1/α_i for d = Jᵀα.
        d = _direction(nash_mtl(max_norm=0), jac)
        np.testing.assert_allclose(jac @ d, 1 / alpha, rtol=1e-7)
        jac32 = jac.astype(np.float32)
        alpha32 = _weights(nash_mtl(max_norm=0), jac32.astype(np.float64))
        d32 = _direction(nash_mtl(max_norm=0), jac32, torch.float32)
        assert _error(d32, alpha32 @ jac32, jac) < RTOL32


def test_nash_mtl_is_invariant_to_each_tasks_scale_and_clips_to_max_norm() -> None:
    jac = JACOBIANS["random_5x9_3"]
    scales = np.array([1e-3, 0.5, 1.0, 7.0, 1e3])
    d = _direction(nash_mtl(max_norm=0), jac)
    alpha = _weights(nash_mtl(max_norm=0), jac)
    np.testing.assert_allclose(
        _direction(nash_mtl(max_norm=0), scales[:, None] * jac),
        d,
        rtol=1e-8,
        atol=1e-10 * np.abs(d).max(),
    )
    np.testing.assert_allclose(
        _weights(nash_mtl(max_norm=0), scales[:, None] * jac), alpha / scales, rtol=1e-8
    )
    for max_norm in [0.1, 1e9]:
        clipped = _direction(nash_mtl(max_norm=max_norm), jac)
        np.testing.assert_allclose(clipped, d * min(1.0, max_norm / np.linalg.norm(d)), rtol=1e-9)


def test_nash_mtl_stays_finite_when_gradients_are_dependent() -> None:
    for case in ["rank_deficient_T>P", "duplicates", "zero_gradient", "opposite_pair"]:
        jac = JACOBIANS[case]
        alpha = _weights(nash_mtl(max_norm=0), jac)
        assert np.isfinite(alpha).all() and (alpha > 0).all()
        # ‖d‖² = αᵀGα ≤ αᵀ(G + ridge)α = Σ α_i (1/α_i) = T.
        assert np.linalg.norm(alpha @ jac) <= np.sqrt(len(jac)) * (1 + 1e-6)


# ----------------------------------------------------------------------------------------
# The papers' promises
# ----------------------------------------------------------------------------------------


def test_mgda_kkt_and_min_norm_of_the_hull() -> None:
    rng = np.random.default_rng(5)
    for case, jac in JACOBIANS.items():
        gram = jac @ jac.T
        w = _weights(mgda(), jac)
        value = w @ gram @ w
        scale = np.diag(gram).max()
        assert w.min() >= -1e-12 and abs(w.sum() - 1) < 1e-12, case
        # (Gw)_i ≥ wᵀGw for all i, with equality where w_i > 0.
        assert (gram @ w >= value - 1e-10 * scale).all(), case
        support = w > 1e-6
        np.testing.assert_allclose((gram @ w)[support], value, atol=1e-9 * scale, err_msg=case)
        # No point of the hull is shorter.
        samples = rng.dirichlet(np.full(len(jac), 0.5), 2000) @ jac
        assert (np.linalg.norm(samples, axis=1) ** 2 >= value - 1e-10 * scale).all(), case


@pytest.mark.parametrize("factory", [upgrad, dualproj])
def test_non_conflicting_and_unchanged_without_conflict(factory) -> None:
    for case, jac in JACOBIANS.items():
        d = _direction(factory(), jac)
        scale = np.linalg.norm(jac, axis=1).max() ** 2
        assert (jac @ d >= -1e-9 * scale).all(), case
    # No pair conflicts: every gradient already lies in the dual cone, so both give the mean.
    rng = np.random.default_rng(6)
    for jac in [np.abs(rng.standard_normal((5, 8))), JACOBIANS["all_aligned"]]:
        np.testing.assert_allclose(_direction(factory(), jac), jac.mean(0), rtol=1e-9)


def test_dualproj_keeps_a_mean_that_is_already_in_the_dual_cone() -> None:
    jac = np.array([[1.0, 0.0], [-0.3, 1.0], [0.4, 0.4]])  # tasks 1 and 2 conflict
    assert (jac @ jac.mean(0) > 0).all()
    np.testing.assert_allclose(_direction(dualproj(), jac), jac.mean(0), rtol=1e-10)
    assert not np.allclose(_direction(upgrad(), jac), jac.mean(0))  # UPGrad projects each row


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_with_c_zero_is_the_mean(rescale: int) -> None:
    jac = JACOBIANS["conflicting_pair"]
    np.testing.assert_allclose(_direction(cagrad(c=0, rescale=rescale), jac), jac.mean(0))


def test_cagrad_stays_finite_when_zero_is_in_the_hull() -> None:
    """Then CAGrad's direction is not unique (any d of the ball with min_i g_iᵀd = 0)."""
    for case in ["opposite_pair", "rank_deficient_T>P", "zero_gradient"]:
        jac = JACOBIANS[case]
        d = _direction(cagrad(c=0.5, rescale=0), jac)
        g0 = jac.mean(0)
        assert np.isfinite(d).all()
        assert np.linalg.norm(d - g0) <= 0.5 * np.linalg.norm(g0) * (1 + 1e-6)


# ----------------------------------------------------------------------------------------
# vmap and pytrees
# ----------------------------------------------------------------------------------------

FACTORIES = {
    "mgda": mgda,
    "upgrad": upgrad,
    "dualproj": dualproj,
    "cagrad": cagrad,
    "nash_mtl": nash_mtl,
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_vmap_over_five_jacobians_equals_one_by_one(name: str) -> None:
    aggregator = FACTORIES[name]()
    rng = np.random.default_rng(7)
    batch = rng.standard_normal((5, 4, 6))
    batch[1, 3] = batch[1, 0]  # a duplicate
    batch[2, 1] = -batch[2, 0]  # an opposite pair
    batch[3] = np.abs(batch[3])  # no conflict
    grads = torch.tensor(batch)
    state = aggregator.init(4)
    batched, _ = vmap(lambda g: aggregator.update(g, state), in_dims=0)(grads)
    for i in range(5):
        single, _ = aggregator.update(grads[i], state)
        # Batched and single LAPACK calls round differently. With independent gradients the
        # results agree to round-off; with dependent ones (items 1, 2) the ridged problems are
        # ill-conditioned and agree to the solvers' accuracy, as they do with the references.
        tolerance = 1e-8 if i in (0, 3, 4) else RTOL64 * np.linalg.norm(batch[i], axis=1).max()
        torch.testing.assert_close(batched[i], single, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_pytree_task_grads_equal_the_flattened_matrix(name: str) -> None:
    aggregator = FACTORIES[name]()
    rng = np.random.default_rng(8)
    tree = {
        "w": torch.tensor(rng.standard_normal((3, 3, 4))),
        "b": torch.tensor(rng.standard_normal((3, 5))),
    }
    flat = torch.cat([tree["w"].reshape(3, -1), tree["b"]], 1)
    direction, _ = aggregator.update(tree, aggregator.init(3))
    expected, _ = aggregator.update(flat, aggregator.init(3))
    assert direction["w"].shape == (3, 4) and direction["b"].shape == (5,)
    got = torch.cat([direction["w"].reshape(-1), direction["b"]])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_option_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="normalization"):
        mgda(normalization="loss")
    with pytest.raises(ValueError, match="pref_vector"):
        upgrad(pref_vector=torch.ones(2, 2))
    with pytest.raises(ValueError, match="pref_vector"):
        dualproj(pref_vector=torch.ones(3)).weights(torch.eye(4), None)
    with pytest.raises(ValueError, match="rescale"):
        cagrad(rescale=3)
    with pytest.raises(ValueError, match="max_norm"):
        nash_mtl(max_norm=-1.0)


@pytest.mark.parametrize("simplex", [True, False], ids=["simplex", "bounds"])
def test_the_eager_active_set_certifies_and_equals_the_enumeration(simplex: bool) -> None:
    """The eager fast path (funcmtl/aggregators/_active_set.py) answers the common
    well-conditioned problems itself, exactly; the others go to the interior-point method."""
    from funcmtl.aggregators import _active_set
    from funcmtl.aggregators._normalize import normalize, ridge

    rng = np.random.default_rng(5)
    certified = 0
    for trial in range(40):
        n = 2 + trial % 5
        jac = rng.standard_normal((n, 7)) * np.logspace(0, 2, n)[:, None]
        jac += rng.standard_normal(7) * (trial % 3)  # some shared direction: fewer conflicts
        q = ridge(normalize(torch.tensor(jac @ jac.T))[0])
        lower = np.zeros(n) if simplex else rng.uniform(0.0, 1.0, n)
        c = q @ torch.tensor(lower)  # the linear term of y = x − lower
        found = _active_set.solve(q, c, 1.0 if simplex else None)
        if found is None:
            continue
        certified += 1
        expected = ref_qp(q.numpy(), lower, simplex)
        np.testing.assert_allclose(found.numpy() + lower, expected, atol=1e-8)
    assert certified >= 30  # the fast path is the one that runs


@pytest.mark.parametrize("simplex", [True, False], ids=["simplex", "bounds"])
def test_the_host_solver_certifies_and_equals_the_enumeration(simplex: bool) -> None:
    """Eager calls with up to 12 tasks solve on Python floats (funcmtl/aggregators/_host_qp.py):
    exact when certified; rank-deficient Gramians (singular free blocks) are left to the
    tensor solvers, and traced calls never take it."""
    from funcmtl.aggregators import _host_qp

    rng = np.random.default_rng(8)
    certified = 0
    for trial in range(40):
        n = 2 + trial % 7
        jac = rng.standard_normal((n, 9)) * np.logspace(0, 2, n)[:, None]
        jac += rng.standard_normal(9) * (trial % 3)
        gram = jac @ jac.T
        lower = np.zeros(n) if simplex else rng.uniform(0.0, 1.0, (3, n))
        found = _host_qp.project(torch.tensor(gram), torch.tensor(lower), simplex=simplex)
        if found is None:
            continue
        certified += 1
        for bound, row in zip(np.atleast_2d(lower), np.atleast_2d(found.numpy()), strict=True):
            np.testing.assert_allclose(row, ref_qp(gram / gram.diagonal().mean(), bound, simplex),
                                       atol=1e-8)
    assert certified >= 36
    singular = rng.standard_normal((4, 2)) @ rng.standard_normal((2, 6))  # rank 2 of 4
    gram = torch.tensor(singular @ singular.T)
    for bound in [torch.zeros(4), torch.full((4,), 0.25), torch.eye(4) / 4]:
        found = _host_qp.project(gram, bound, simplex=not bound.any())
        if found is not None:  # certified: then exact
            for b, row in zip(np.atleast_2d(bound.numpy()), np.atleast_2d(found.numpy()),
                              strict=True):
                np.testing.assert_allclose(row @ singular, ref_qp(
                    gram.numpy(), b, not bound.any()) @ singular, atol=1e-8)
    seen = []

    def probe(g):
        seen.append(_host_qp.project(g, torch.zeros(3), simplex=True))
        return g.sum()

    torch.func.vmap(probe)(torch.eye(3).expand(2, 3, 3))
    assert seen == [None]  # under vmap values cannot be read: the tensor solvers run


def test_the_host_solver_meets_the_kkt_conditions_for_many_tasks() -> None:
    """One problem (MGDA's simplex, DualProj's bounds) up to 64 tasks: the optimality
    conditions, checked in float64 NumPy on the answer."""
    from funcmtl.aggregators import _host_qp

    rng = np.random.default_rng(9)
    certified = 0
    for trial in range(12):
        n = [16, 40, 64][trial % 3]
        jac = rng.standard_normal((n, 3 * n)) + rng.standard_normal(3 * n) * (trial % 2)
        gram = jac @ jac.T
        scale = np.diag(gram).max()
        for simplex in (True, False):
            lower = np.zeros(n) if simplex else np.full(n, 1 / n)
            found = _host_qp.project(torch.tensor(gram), torch.tensor(lower), simplex=simplex)
            if found is None:
                continue
            certified += 1
            v = found.numpy()
            grad = gram @ v
            if simplex:  # v ∈ Δ, (Gv)_i ≥ vᵀGv, with equality where v_i > 0
                assert v.min() >= 0 and abs(v.sum() - 1) < 1e-12
                assert (grad >= v @ grad - 1e-9 * scale).all()
                np.testing.assert_allclose(grad[v > 1e-9], v @ grad, atol=1e-9 * scale)
            else:  # v ≥ l, Gv ≥ 0, complementary
                assert (v >= lower - 1e-15).all() and (grad >= -1e-9 * scale).all()
                assert np.abs((v - lower) * grad).max() < 1e-9 * scale
    assert certified >= 12  # the others have over 12 free variables: tensor solvers
    dense = rng.standard_normal((32, 2000))  # near-orthogonal: every weight of MGDA positive
    assert _host_qp.project(torch.tensor(dense @ dense.T), torch.zeros(32), simplex=True) is None


@pytest.mark.parametrize("factory", [mgda, upgrad, dualproj], ids=lambda f: f.__name__)
def test_the_branch_free_solvers_equal_the_eager_ones(factory, monkeypatch) -> None:
    """On a CPU the eager paths (active set, certified rows only) run, also under ``vmap``
    (its rule solves the members as one plain batch); on an accelerator or inside another
    transform the fixed-count, branch-free solvers run instead. Both give the same answer."""
    from funcmtl.aggregators import _qp

    aggregator = factory()
    rng = np.random.default_rng(11)
    low_rank = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 9))  # uncertified rows
    shared = rng.standard_normal((6, 9)) + 2 * rng.standard_normal(9)  # few conflicts
    jacobians = torch.tensor(np.stack([rng.standard_normal((6, 9)), low_rank, shared]))
    state = aggregator.init(6)

    def directions() -> torch.Tensor:
        return vmap(lambda j: aggregator.update(j, state)[0])(jacobians)

    eager = directions()
    monkeypatch.setattr(_qp, "may_branch", lambda *tensors: False)
    branch_free = directions()
    torch.testing.assert_close(branch_free, eager, atol=1e-9, rtol=1e-9)


def test_cagrads_eager_path_certifies_and_equals_the_barrier_solver(monkeypatch) -> None:
    """The parametric active-set solve of CAGrad's dual (eager CPU) answers the common cases
    itself and reaches the same dual value as the branch-free barrier/interior-point solver."""
    from funcmtl.aggregators import _cagrad_active_set, _cagrad_dual
    from funcmtl.aggregators._normalize import normalize, ridge

    rng = np.random.default_rng(3)
    problems = []
    for trial in range(24):
        t = (2, 3, 5, 8, 13, 20)[trial % 6]
        jac = rng.standard_normal((t, 30)) + rng.standard_normal(30) * (trial % 3)
        q = normalize(torch.tensor(jac * np.logspace(0, 1, t)[:, None]) @ torch.tensor(
            jac * np.logspace(0, 1, t)[:, None]).T)[0]
        problems.append((q, 0.5 * (q.sum() / t**2).sqrt()))
    fast = [_cagrad_active_set.solve(ridge(q), ridge(q).mean(-1), float(r)) for q, r in problems]
    assert sum(w is not None for w in fast) >= 20
    monkeypatch.setattr(_cagrad_dual, "may_branch", lambda *tensors: False)
    for (q, r), w in zip(problems, fast, strict=True):
        if w is None:
            continue
        reference, _ = _cagrad_dual.cagrad_weights(q, r)
        qr = ridge(q)

        def value(x, qr=qr, r=r):
            return float(qr.mean(-1) @ x + r * (x @ qr @ x).sqrt())

        assert abs(w.sum() - 1) < 1e-12 and w.min() >= 0
        assert value(w) <= value(reference) + 1e-12


@pytest.mark.parametrize("factory", [mgda, upgrad, dualproj], ids=lambda f: f.__name__)
def test_under_vmap_certified_members_skip_the_interior_point_method(factory, monkeypatch):
    """Issue 13: a member whose certificate holds must not pay for the fallback."""
    from funcmtl.aggregators import _qp

    def refused(*args, **kwargs):
        raise AssertionError("the interior-point fallback ran for certified problems")

    monkeypatch.setattr(_qp, "_bounded_interior_point", refused)
    rng = np.random.default_rng(4)
    jacobians = torch.tensor(rng.standard_normal((6, 5, 40)))  # full rank: all certified
    aggregator = factory()
    state = aggregator.init(5)
    out = vmap(lambda j: aggregator.update(j, state)[0])(jacobians)
    for j, d in zip(jacobians, out, strict=True):  # and the same answers one by one
        torch.testing.assert_close(d, aggregator.update(j, state)[0], atol=1e-10, rtol=1e-10)


def test_cagrad_under_vmap_with_many_tasks_equals_one_by_one() -> None:
    """From 16 tasks each member takes the eager path inside the vmap rule."""
    gen = torch.Generator().manual_seed(3)
    jacs = torch.randn(4, 20, 30, generator=gen, dtype=torch.float64) + torch.randn(
        30, generator=gen, dtype=torch.float64)
    agg = cagrad(c=0.5)
    batched = vmap(lambda j: agg.update(j, agg.init(20))[0])(jacs)
    for jac, direction in zip(jacs, batched, strict=True):
        torch.testing.assert_close(direction, agg.update(jac, agg.init(20))[0],
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("factory", [mgda, upgrad, dualproj], ids=lambda f: f.__name__)
def test_the_whole_update_on_the_members_plain_batch(factory) -> None:
    """Under vmap (CPU) MGDA/UPGrad/DualProj compute G, the weights and Jᵀw on the plain batch
    (aggregators/_member_batch.py): pytrees of leaves, a diverged member (NaN direction, the
    others unaffected) and nested vmaps all equal one-by-one calls."""
    gen = torch.Generator().manual_seed(4)
    grads = {"w": torch.randn(5, 6, 3, 4, generator=gen, dtype=torch.float64),
             "b": torch.randn(5, 6, 7, generator=gen, dtype=torch.float64)}
    grads["b"][2, 1, 0] = float("nan")  # member 2 diverged
    agg = factory()

    def one(g):
        return agg.update(g, agg.init(6))[0]

    batched = vmap(one)(grads)
    for k in range(5):
        solo = one({name: leaf[k] for name, leaf in grads.items()})
        for name in grads:
            if k == 2:
                assert batched[name][k].isnan().all()
            else:
                torch.testing.assert_close(batched[name][k], solo[name], rtol=1e-9, atol=1e-9)
    nested = vmap(vmap(one))({name: leaf.reshape(5, 1, *leaf.shape[1:])
                              for name, leaf in grads.items()})
    torch.testing.assert_close(nested["w"][:, 0], batched["w"], equal_nan=True)
