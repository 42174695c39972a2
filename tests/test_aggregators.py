"""Aggregators: one conformance suite over every registered name, then each method's promises.

Pinned values come from float64 NumPy references written here from each paper's formula (or
derived by hand), never from the library's own output.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, root

import funcmtl as fm
from funcmtl import aggregators as agg
from funcmtl.aggregators._aligned_mtl import balance_transformation
from funcmtl.aggregators._gradvac import GradVacState

NAMES = agg.names()
KEY = fm.random.key(7)
RANDOMISED = {"pcgrad", "graddrop", "gradvac"}  # need `key`
ORDER_DEPENDENT = {"pcgrad", "gradvac"}  # the key-driven task order follows the task index
SCALE_INVARIANT = {"nash_mtl"}  # d(sJ) = d(J); every other method: d(sJ) = s d(J), s > 0
NON_CONFLICTING = {"mgda", "upgrad", "dualproj", "config"}  # J d ≥ 0 (config: full row rank)

# The pinned Jacobian: 3 tasks, 4 parameters, full row rank; pairs (1,2) and (2,3) conflict.
J0 = np.array(
    [
        [1.0, 0.0, 0.5, 0.0],
        [-0.5, 1.0, 0.0, 0.5],
        [0.5, -1.0, 1.0, 0.0],
    ]
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _random(shape: tuple[int, ...], seed: int, dtype=torch.float64) -> torch.Tensor:
    return fm.random.normal(fm.random.key(seed), shape, dtype=dtype)


def _jacobians() -> dict[str, torch.Tensor]:
    a = _random((3, 8), 1)
    return {
        "random": _random((4, 9), 0),
        "conflicting": torch.tensor(J0),
        "rank_deficient": torch.stack([a[0], a[1], a[0] + a[1], 2 * a[2], a[2]]),
        "duplicate_rows": torch.stack([a[0], a[0], a[1]]),
        "zero_row": torch.stack([a[0], torch.zeros(8, dtype=torch.float64), a[1]]),
        "single_task": a[:1],
        "zero": torch.zeros(3, 8, dtype=torch.float64),
    }


JACOBIANS = _jacobians()


def _direction(name: str, grads, key=KEY, **options):
    aggregator = agg.get(name, **options)
    num_tasks = fm.tree.leaves(grads)[0].shape[0]
    direction, _ = aggregator.update(grads, aggregator.init(num_tasks), key=key)
    return direction


def _close(a: torch.Tensor, b, atol: float = 1e-7, rtol: float = 1e-6) -> None:
    b = torch.as_tensor(b, dtype=a.dtype)
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------
# Conformance: every registered aggregator
# ----------------------------------------------------------------------------------------


def test_registry_lists_every_method_of_the_design() -> None:
    expected = {
        "mean", "sum", "pcgrad", "graddrop", "mgda", "cagrad", "gradvac", "imtl_g",
        "aligned_mtl", "upgrad", "dualproj", "nash_mtl", "config",
    }  # fmt: skip
    assert set(NAMES) == expected and len(NAMES) == len(expected)
    for name in NAMES:
        method = agg.method(name)
        assert method.name == name and method.factory is getattr(agg, name)
        assert method.summary and "\n" not in method.summary
        assert re.search(r", \d{4}\. https://\S+$", method.reference)  # "Authors, Title, Year. URL"
        assert agg.describe(name) == f"{method.summary} [{method.reference}]"
        assert getattr(agg, name).__doc__
        assert "References:" in getattr(agg, name).__doc__


@pytest.mark.parametrize("kind", list(JACOBIANS))
@pytest.mark.parametrize("name", NAMES)
def test_shape_and_finiteness(name: str, kind: str) -> None:
    jac = JACOBIANS[kind]
    direction = _direction(name, jac)
    assert direction.shape == jac.shape[1:] and direction.dtype == jac.dtype
    assert torch.isfinite(direction).all()
    if kind == "zero":
        assert torch.equal(direction, torch.zeros_like(direction))


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name: str) -> None:
    jac = JACOBIANS["random"].float()
    direction = _direction(name, jac)
    assert direction.dtype == torch.float32 and torch.isfinite(direction).all()
    _close(direction.double(), _direction(name, jac.double()), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(set(NAMES) - ORDER_DEPENDENT))
def test_permutation_invariance(name: str) -> None:
    jac = JACOBIANS["conflicting"]
    reference = _direction(name, jac)
    for perm in itertools.permutations(range(3)):
        _close(_direction(name, jac[list(perm)]), reference, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_positive_scaling(name: str) -> None:
    jac = JACOBIANS["random"]
    reference = _direction(name, jac)
    for scale in (0.01, 3.0, 1e3):
        expected = reference if name in SCALE_INVARIANT else scale * reference
        _close(_direction(name, scale * jac), expected, atol=1e-6 * scale, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_jacobians_equals_one_by_one(name: str) -> None:
    aggregator = agg.get(name)
    a = _random((3, 6), 11)
    # Masks, not branches: singular members must not change the others' results.
    jacs = torch.stack([a, _random((3, 6), 12), torch.stack([a[0], a[1], a[0] + a[1]]), 0 * a, a])
    keys = fm.random.split(KEY, 5)
    state = aggregator.init(3)

    def one(jac, key):
        return aggregator.update(jac, state, key=key)

    batched, batched_state = torch.func.vmap(one)(jacs, keys)
    for i in range(5):
        direction, new_state = one(jacs[i], keys[i])
        _close(batched[i], direction, atol=1e-9)
        for a, b in zip(fm.tree.leaves(batched_state), fm.tree.leaves(new_state), strict=True):
            _close(a[i], b, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_pytree_input_equals_flattened_matrix(name: str) -> None:
    grads = {"w": _random((3, 3, 4), 21), "b": _random((3, 5), 22)}
    flat = torch.cat([x.reshape(3, -1) for x in fm.tree.leaves(grads)], dim=1)
    direction = _direction(name, grads)
    assert direction["w"].shape == (3, 4) and direction["b"].shape == (5,)
    expected = _direction(name, flat)
    _close(torch.cat([direction["w"].reshape(-1), direction["b"]]), expected, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_update_equals_combine_of_gramian_weights(name: str) -> None:
    aggregator = agg.get(name)
    if name == "graddrop":
        assert aggregator.weights is None  # per coordinate: not a weighting of the Gramian
        return
    jac = JACOBIANS["conflicting"]
    state = aggregator.init(3)
    direction, state_u = aggregator.update(jac, state, key=KEY)
    weights, state_w = aggregator.weights(agg.gramian(jac), state, key=KEY)
    assert weights.shape == (3,)
    _close(direction, agg.combine(weights, jac), atol=1e-12)
    for a, b in zip(fm.tree.leaves(state_u), fm.tree.leaves(state_w), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_state_keeps_its_structure_and_same_key_same_result(name: str) -> None:
    aggregator = agg.get(name)
    state = aggregator.init(4)
    jac = JACOBIANS["random"]
    first, new_state = aggregator.update(jac, state, key=KEY)
    assert fm.tree.structure(new_state) == fm.tree.structure(state)
    for a, b in zip(fm.tree.leaves(new_state), fm.tree.leaves(state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    again, _ = aggregator.update(jac, state, key=KEY)
    assert torch.equal(first, again)


@pytest.mark.parametrize("name", sorted(NON_CONFLICTING))
def test_non_conflicting_methods_never_conflict(name: str) -> None:
    for seed in range(5):
        jac = _random((4, 6), 100 + seed)
        assert (jac @ _direction(name, jac) >= -1e-9).all()


# ----------------------------------------------------------------------------------------
# Pinned values on J0: independent float64 references of each paper's formula
# ----------------------------------------------------------------------------------------


def _orders(key: torch.Tensor, num_tasks: int) -> list[list[int]]:
    """The documented task order: task i visits permutation(split(key, T)[i], T)."""
    keys = fm.random.split(key, num_tasks)
    return [fm.random.permutation(keys[i], num_tasks).tolist() for i in range(num_tasks)]


def ref_pcgrad(jac: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """Yu et al. 2020, Algorithm 1; asserts that each projection removes its conflict."""
    out = np.zeros(jac.shape[1])
    for i, order in enumerate(orders):
        g = jac[i].copy()
        for j in order:
            if j == i:
                continue
            inner = g @ jac[j]
            if inner < 0:
                g = g - inner / (jac[j] @ jac[j]) * jac[j]
                assert g @ jac[j] >= -1e-12  # no conflict left with the gradient just used
        out += g
    return out


def ref_gradvac(jac, orders, targets, beta):
    """Wang et al. 2021, Algorithm 1 (Eq. 4–5), literally; returns (direction, targets)."""
    targets = targets.copy()
    out = np.zeros(jac.shape[1])
    for i, order in enumerate(orders):
        g = jac[i].copy()
        for j in order:
            if j == i:
                continue
            phi = g @ jac[j] / (np.linalg.norm(g) * np.linalg.norm(jac[j]))
            hat = targets[i, j]
            if phi < hat:
                norm_i, norm_j = np.linalg.norm(g), np.linalg.norm(jac[j])
                shift = hat * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - hat**2)
                g = g + norm_i * shift / (norm_j * np.sqrt(1 - hat**2)) * jac[j]
            targets[i, j] = (1 - beta) * hat + beta * phi
        out += g
    return out, targets


def ref_graddrop(jac: np.ndarray, draws: np.ndarray, leak: float) -> np.ndarray:
    """Chen et al. 2020, Algorithm 1 lines 10-15, coordinate by coordinate."""
    out = np.zeros(jac.shape[1])
    for k in range(jac.shape[1]):
        col = jac[:, k]
        purity = 0.5 * (1 + col.sum() / np.abs(col).sum())
        for value in col:
            kept = (purity > draws[k] and value > 0) or (purity < draws[k] and value < 0)
            out[k] += (leak + (1 - leak) * kept) * value
    return out


def ref_imtl_g(jac: np.ndarray) -> np.ndarray:
    """Liu et al. 2021, the closed form with g_1 as reference."""
    units = jac / np.linalg.norm(jac, axis=1, keepdims=True)
    d_mat = jac[0] - jac[1:]
    u_mat = units[0] - units[1:]
    alpha = jac[0] @ u_mat.T @ np.linalg.inv(d_mat @ u_mat.T)
    alpha = np.concatenate([[1 - alpha.sum()], alpha])
    return alpha @ jac


def ref_aligned_mtl(jac: np.ndarray) -> np.ndarray:
    """Senushkin et al. 2023: the Procrustes alignment σ_min U Vᵀ of J = U Σ Vᵀ, summed."""
    u, s, vt = np.linalg.svd(jac, full_matrices=False)
    return (s.min() * u @ vt).sum(0)


def ref_config(jac: np.ndarray) -> np.ndarray:
    """Liu et al. 2024, Eq. 2: least-squares direction of the unit gradients, projection length."""
    units = jac / np.linalg.norm(jac, axis=1, keepdims=True)
    best = np.linalg.lstsq(units, np.ones(len(jac)), rcond=None)[0]
    unit = best / np.linalg.norm(best)
    return (jac @ unit).sum() * unit


def ref_mgda(jac: np.ndarray) -> np.ndarray:
    """Min-norm point of the convex hull, by enumerating the faces of the simplex."""
    gram, best = jac @ jac.T, None
    for size in range(1, len(jac) + 1):
        for face in itertools.combinations(range(len(jac)), size):
            f = list(face)
            kkt = np.block([[gram[np.ix_(f, f)], np.ones((size, 1))], [np.ones((1, size)), 0]])
            alpha = np.linalg.lstsq(kkt, np.r_[np.zeros(size), 1.0], rcond=None)[0][:size]
            if (alpha >= -1e-12).all():
                point = alpha @ jac[f]
                if best is None or point @ point < best @ best:
                    best = point
    return best


def ref_project_dual_cone(jac: np.ndarray, g: np.ndarray) -> np.ndarray:
    """argmin ||x - g|| s.t. J x >= 0, by enumerating active sets of the KKT conditions."""
    candidates = []
    for size in range(len(jac) + 1):
        for active in itertools.combinations(range(len(jac)), size):
            a = list(active)
            mu = -np.linalg.solve(jac[a] @ jac[a].T, jac[a] @ g) if a else np.zeros(0)
            x = g + mu @ jac[a] if a else g.copy()
            if (mu >= -1e-12).all() and (jac @ x >= -1e-12).all():
                candidates.append(x)
    return min(candidates, key=lambda x: np.linalg.norm(x - g))


def ref_upgrad(jac: np.ndarray) -> np.ndarray:
    """Quinton & Rey 2024: the mean of the projections of each row onto the dual cone."""
    return np.mean([ref_project_dual_cone(jac, g) for g in jac], axis=0)


def ref_dualproj(jac: np.ndarray) -> np.ndarray:
    """Quinton & Rey 2024: the projection of the mean gradient onto the dual cone."""
    return ref_project_dual_cone(jac, jac.mean(0))


def ref_cagrad(jac: np.ndarray, c: float = 0.5) -> np.ndarray:
    """Liu et al. 2021: the dual over the simplex by SLSQP, then d = (g0 + r g_w/|g_w|)/(1+c²)."""
    g0 = jac.mean(0)
    radius = c * np.linalg.norm(g0)

    def dual(w):
        g_w = w @ jac
        return g_w @ g0 + radius * np.linalg.norm(g_w)

    simplex = [{"type": "eq", "fun": lambda w: w.sum() - 1}]
    w0 = np.full(len(jac), 1 / len(jac))
    options = {"ftol": 1e-16, "maxiter": 1000}
    w = minimize(dual, w0, bounds=[(0, 1)] * len(jac), constraints=simplex, options=options).x
    g_w = w @ jac
    return (g0 + radius * g_w / np.linalg.norm(g_w)) / (1 + c**2)


def ref_nash_mtl(jac: np.ndarray, max_norm: float = 1.0) -> np.ndarray:
    """Navon et al. 2022, Claim 3.1: the root of G α = 1/α (α > 0), clipped to max_norm."""
    gram = jac @ jac.T
    alpha = root(lambda a: gram @ a - 1 / a, 1 / np.sqrt(np.diag(gram)), tol=1e-14).x
    assert (alpha > 0).all() and np.abs(gram @ alpha - 1 / alpha).max() < 1e-12
    direction = alpha @ jac
    return direction * min(1.0, max_norm / np.linalg.norm(direction))


def _pinned() -> dict[str, Callable[[], np.ndarray]]:
    orders = _orders(KEY, 3)
    draws = fm.random.uniform(KEY, (4,), dtype=torch.float64).numpy()
    return {
        # By hand: the column means and sums of J0.
        "mean": lambda: np.array([1 / 3, 0.0, 0.5, 1 / 6]),
        "sum": lambda: np.array([1.0, 0.0, 1.5, 0.5]),
        "pcgrad": lambda: ref_pcgrad(J0, orders),
        "graddrop": lambda: ref_graddrop(J0, draws, 0.0),
        "gradvac": lambda: ref_gradvac(J0, orders, np.zeros((3, 3)), 0.5)[0],
        "imtl_g": lambda: ref_imtl_g(J0),
        "aligned_mtl": lambda: ref_aligned_mtl(J0),
        "config": lambda: ref_config(J0),
        "mgda": lambda: ref_mgda(J0),
        "upgrad": lambda: ref_upgrad(J0),
        "dualproj": lambda: ref_dualproj(J0),
        "cagrad": lambda: ref_cagrad(J0),
        "nash_mtl": lambda: ref_nash_mtl(J0),
    }


PINNED = _pinned()


@pytest.mark.parametrize("name", NAMES)
def test_pinned_values(name: str) -> None:
    atol = 1e-6 if name == "cagrad" else 1e-9  # the reference's SLSQP stops near 1e-8
    _close(_direction(name, torch.tensor(J0)), PINNED[name](), atol=atol, rtol=1e-7)


def test_pinned_values_by_hand() -> None:
    """Two 2-task cases small enough to derive on paper."""
    jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    # g1 - (g1·g2 / |g2|²) g2 = (1/2, 1/2); g2 - (g1·g2 / |g1|²) g1 = (0, 1).
    _close(_direction("pcgrad", jac), [0.5, 1.5])
    jac = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    _close(_direction("aligned_mtl", jac), [1.0, 1.0])  # both rescaled to σ_min = 1
    _close(_direction("imtl_g", jac), [0.75, 0.75])  # α = (1/4, 3/4): projections 3/4
    _close(_direction("config", jac), [2.0, 2.0])  # bisector, length (3 + 1)/√2
    _close(_direction("mgda", jac), [0.3, 0.9])  # min-norm point of the segment


# ----------------------------------------------------------------------------------------
# Method promises
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_follows_algorithm_1(seed: int) -> None:
    jac = _random((5, 7), 200 + seed)
    key = fm.random.key(seed)
    expected = ref_pcgrad(jac.numpy(), _orders(key, 5))  # asserts no conflict after each step
    _close(_direction("pcgrad", jac, key=key), expected, atol=1e-10)


def test_pcgrad_two_tasks_leaves_no_conflict_and_no_conflict_gives_the_sum() -> None:
    for seed in range(10):
        jac = _random((2, 5), 300 + seed)
        direction = _direction("pcgrad", jac)
        assert (jac @ direction >= -1e-12).all()
    aligned = _random((4, 6), 5).abs()  # positive entries: no pair conflicts
    _close(_direction("pcgrad", aligned), aligned.sum(0), atol=1e-12)


def test_pcgrad_needs_the_key_and_the_key_drives_the_order() -> None:
    jac = _random((5, 7), 400)
    results = {tuple(_direction("pcgrad", jac, key=fm.random.key(s)).tolist()) for s in range(8)}
    assert len(results) > 1  # with 5 tasks and conflicts, the order matters


def test_imtl_g_projects_equally_onto_every_unit_gradient() -> None:
    for jac in (_random((4, 10), 500), torch.tensor(J0), JACOBIANS["duplicate_rows"]):
        units = jac / jac.norm(dim=1, keepdim=True)
        projections = units @ _direction("imtl_g", jac)
        _close(projections, projections[0].expand(len(jac)), atol=1e-9)
    weights, _ = agg.imtl_g().weights(agg.gramian(torch.tensor(J0)), agg.imtl_g().init(3))
    _close(weights.sum(), 1.0)


def test_aligned_mtl_aligned_gradients_are_orthogonal_with_equal_norms() -> None:
    for jac in (_random((4, 10), 600), torch.tensor(J0)):
        gram = agg.gramian(jac)
        balance = balance_transformation(gram)
        aligned = balance @ jac
        sigma_min = torch.linalg.svdvals(jac).min()
        _close(aligned @ aligned.T, sigma_min**2 * torch.eye(len(jac), dtype=jac.dtype))
        weights, _ = agg.aligned_mtl().weights(gram, agg.aligned_mtl().init(len(jac)))
        _close(weights, balance.sum(1))
    # Rank 3 of 5: the aligned Gramian is σ_r² times a projection (eigenvalues σ_r² or 0).
    jac = JACOBIANS["rank_deficient"]
    aligned = balance_transformation(agg.gramian(jac)) @ jac
    eigenvalues = torch.linalg.eigvalsh(aligned @ aligned.T)
    sigma_r = torch.linalg.svdvals(jac)[2]
    _close(eigenvalues, torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]) * sigma_r**2, atol=1e-9)


def test_config_has_equal_positive_cosines_with_every_gradient() -> None:
    for jac in (_random((4, 10), 700), torch.tensor(J0), _random((3, 3), 701)):
        direction = _direction("config", jac)
        cosines = jac @ direction / (jac.norm(dim=1) * direction.norm())
        assert (cosines > 0).all()
        _close(cosines, cosines[0].expand(len(jac)), atol=1e-9)


def test_graddrop_keeps_one_sign_per_coordinate() -> None:
    jac = _random((5, 40), 800)
    positive, negative = jac.clamp(min=0).sum(0), jac.clamp(max=0).sum(0)
    for seed in range(5):
        direction = _direction("graddrop", jac, key=fm.random.key(seed))
        kept_positive = torch.isclose(direction, positive)
        kept_negative = torch.isclose(direction, negative)
        assert (kept_positive | kept_negative).all()
    _close(_direction("graddrop", jac, leak=1.0), jac.sum(0), atol=1e-12)


def test_graddrop_keeps_the_positive_sign_with_probability_purity() -> None:
    jac = torch.tensor([[1.0, 2.0, -1.0], [-3.0, 1.0, -1.0], [1.0, -1.0, 0.5]])
    purity = 0.5 * (1 + jac.sum(0) / jac.abs().sum(0))
    aggregator = agg.graddrop()
    state = aggregator.init(3)
    keys = fm.random.split(KEY, 4000)
    directions = torch.func.vmap(lambda k: aggregator.update(jac, state, key=k)[0])(keys)
    frequency = torch.isclose(directions, jac.clamp(min=0).sum(0)).double().mean(0)
    assert (frequency - purity).abs().max() < 0.03  # ~4 standard errors


def test_gradvac_with_zero_targets_is_pcgrad_and_tracks_its_targets() -> None:
    jac = _random((4, 6), 900)
    for seed in range(4):
        key = fm.random.key(seed)
        _close(_direction("gradvac", jac, key=key), _direction("pcgrad", jac, key=key))
    # Two steps against the reference: the EMA state carries over.
    aggregator = agg.gradvac(beta=0.3)
    state = aggregator.init(4)
    targets = np.zeros((4, 4))
    for step, seed in enumerate((901, 902)):
        jac = _random((4, 6), seed)
        key = fm.random.fold_in(KEY, step)
        direction, state = aggregator.update(jac, state, key=key)
        expected, targets = ref_gradvac(jac.numpy(), _orders(key, 4), targets, 0.3)
        _close(direction, expected, atol=1e-6)
        _close(state.targets.double(), targets, atol=1e-6)
        assert (torch.diagonal(state.targets) == 0).all()


def test_gradvac_raises_the_cosine_exactly_to_its_target() -> None:
    jac = torch.tensor([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1]], dtype=torch.float64)
    target = 0.8  # above cos(g1, g2) ≈ 0.47: both directions get vaccinated
    aggregator = agg.gradvac()
    state = GradVacState(torch.tensor([[0.0, target], [target, 0.0]]))
    weights, _ = aggregator.weights(agg.gramian(jac), state, key=KEY)
    # With 2 tasks, g1' = g1 + a g2 and g2' = g2 + b g1, so the weights are (1 + b, 1 + a).
    g1_new = jac[0] + (weights[1] - 1) * jac[1]
    g2_new = jac[1] + (weights[0] - 1) * jac[0]
    cosine = torch.nn.functional.cosine_similarity
    _close(cosine(g1_new, jac[1], dim=0), target, atol=1e-7)
    _close(cosine(g2_new, jac[0], dim=0), target, atol=1e-7)


def test_mean_and_sum_by_hand() -> None:
    jac = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([1.0, -1.0])}
    _close(_direction("mean", jac)["a"], [2.0, 3.0])
    _close(_direction("sum", jac)["b"], 0.0)


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def test_unknown_name_lists_the_known_names() -> None:
    message = r"`name` must be one of the known aggregators \(mean, sum, pcgrad.*; got 'pcgard'\."
    for lookup in (agg.get, agg.method, agg.options, agg.describe):
        with pytest.raises(ValueError, match=message):
            lookup("pcgard")


def test_options_come_from_the_factory_signature() -> None:
    assert agg.options("gradvac") == {"beta": 0.5}
    assert agg.options("pcgrad") == {}


def test_unknown_option_names_it_and_the_valid_ones() -> None:
    message = r"^Aggregator 'gradvac' has no option 'bta'; its options are: beta\.$"
    with pytest.raises(ValueError, match=message):
        agg.get("gradvac", bta=0.1)
    with pytest.raises(ValueError, match=r"'pcgrad' has no option 'beta'; its options are: none"):
        agg.get("pcgrad", beta=0.1)


def test_bad_option_values_are_rejected() -> None:
    tensor = " or a 0-dim tensor"
    with pytest.raises(ValueError, match=rf"`beta` must be a number in \(0, 1\]{tensor}; got 0"):
        agg.gradvac(beta=0)
    with pytest.raises(ValueError, match=rf"`leak` must be a number in \[0, 1\]{tensor}; got 2"):
        agg.graddrop(leak=2)
    with pytest.raises(ValueError, match=rf"`rtol` must be None, a number in \[0, 1\){tensor}"):
        agg.aligned_mtl(rtol=-1)


@pytest.mark.parametrize("name", sorted(RANDOMISED))
def test_randomised_methods_require_a_key(name: str) -> None:
    aggregator = agg.get(name)
    with pytest.raises(ValueError, match=rf"`{name}` is randomised: pass `key=`.*got None"):
        aggregator.update(JACOBIANS["random"], aggregator.init(4))


@pytest.mark.parametrize("name", NAMES)
def test_task_grads_without_a_common_task_axis(name: str) -> None:
    aggregator = agg.get(name)
    grads = {"a": torch.zeros(3, 4), "b": torch.zeros(2, 4)}
    with pytest.raises(ValueError, match=r"leading task axis T.*\(T, \.\.\.\).*\(3, 4\), \(2, 4\)"):
        aggregator.update(grads, aggregator.init(3), key=KEY)
    if aggregator.weights is not None:
        with pytest.raises(ValueError, match=r"square matrix of shape \(T, T\); got \(3, 4\)"):
            aggregator.weights(torch.zeros(3, 4), aggregator.init(3), key=KEY)
    with pytest.raises(ValueError, match=r"`num_tasks` must be a positive integer; got 0"):
        aggregator.init(0)


def test_gradvac_state_must_match_the_number_of_tasks() -> None:
    aggregator = agg.gradvac()
    with pytest.raises(ValueError, match=r"for T=4 tasks, targets of shape \(4, 4\); got \(3, 3\)"):
        aggregator.update(JACOBIANS["random"], aggregator.init(3), key=KEY)


# ----------------------------------------------------------------------------------------
# CUDA (runs only where a GPU is present)
# ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_equals_cpu(name: str) -> None:
    jacs = _random((5, 4, 9), 1000)
    keys = fm.random.split(KEY, 5)
    aggregator = agg.get(name)
    state = aggregator.init(4)

    def batch(jac, key):
        return torch.func.vmap(lambda j, k: aggregator.update(j, state, key=k)[0])(jac, key)

    on_gpu = batch(jacs.cuda(), keys.cuda())
    assert on_gpu.device.type == "cuda"
    _close(on_gpu.cpu(), batch(jacs, keys), atol=1e-8)
