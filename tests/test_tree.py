"""Pytree helpers: round-trips on nested structures and clear errors."""

from typing import NamedTuple

import pytest
import torch

import funcmtl as fm


class Inner(NamedTuple):
    a: torch.Tensor
    b: dict


def nested(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g),
        "state": Inner(torch.randn(2, generator=g), {"m": torch.randn(5, 1, generator=g)}),
        "pair": (torch.randn((), generator=g), torch.randn(2, 2, generator=g).double()),
    }


def assert_tree_equal(x, y):
    fm.tree.check_same_structure([x, y])
    for u, v in zip(fm.tree.leaves(x), fm.tree.leaves(y), strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert torch.equal(u, v)


def test_stack_unstack_round_trip_on_nested_trees():
    trees = [nested(s) for s in range(4)]
    stacked = fm.tree.stack(trees)
    assert stacked["w"].shape == (4, 3, 4)
    assert isinstance(stacked["state"], Inner)
    assert stacked["pair"][0].shape == (4,)
    for original, back in zip(trees, fm.tree.unstack(stacked), strict=True):
        assert_tree_equal(original, back)


def test_ravel_unravel_round_trip_keeps_dtypes():
    t = nested(0)
    flat, unravel = fm.tree.ravel(t)
    assert flat.shape == (fm.tree.size(t),) == (12 + 2 + 5 + 1 + 4,)
    assert flat.dtype == torch.float64  # promoted to the common dtype
    assert_tree_equal(t, unravel(flat))
    assert_tree_equal(t, fm.tree.unravel(flat, t))


def test_algebra_matches_flat_vectors():
    a, b = nested(1), nested(2)
    fa, fb = fm.tree.ravel(a)[0], fm.tree.ravel(b)[0]
    assert torch.allclose(fm.tree.dot(a, b), fa @ fb)
    assert torch.allclose(fm.tree.norm(a), fa.norm())
    assert torch.allclose(fm.tree.ravel(fm.tree.add(a, b))[0], fa + fb)
    assert torch.allclose(fm.tree.ravel(fm.tree.sub(a, b))[0], fa - fb)
    assert torch.allclose(fm.tree.ravel(fm.tree.scale(a, 2.5))[0], 2.5 * fa)
    assert fm.tree.norm(fm.tree.zeros_like(a)) == 0
    mapped = fm.tree.map(lambda x, y: x * y, a, b)
    assert torch.allclose(fm.tree.ravel(mapped)[0], fa * fb)


def test_tree_ops_work_under_vmap():
    trees = [nested(s) for s in range(3)]
    norms = torch.func.vmap(fm.tree.norm)(fm.tree.stack(trees))
    assert torch.allclose(norms, torch.stack([fm.tree.norm(t) for t in trees]).to(norms.dtype))


def test_mismatched_structures_name_the_difference():
    a = {"w": torch.zeros(2), "b": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"missing leaves \[\"\['b'\]\"\]"):
        fm.tree.map(torch.add, a, {"w": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected leaves"):
        fm.tree.stack([a, {**a, "extra": torch.zeros(1)}])


def test_stack_names_leaf_with_wrong_shape():
    a = {"w": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match=r"leaf \['w'\] must have one shape.*\(2, 3\).*\(3, 2\)"):
        fm.tree.stack([a, {"w": torch.zeros(3, 2)}])
    with pytest.raises(ValueError, match="at least one tree"):
        fm.tree.stack([])


def test_unstack_and_unravel_reject_bad_shapes():
    with pytest.raises(ValueError, match="same leading"):
        fm.tree.unstack({"a": torch.zeros(3, 2), "b": torch.zeros(4)})
    _, unravel = fm.tree.ravel({"a": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"shape \(3,\); got shape \(4,\)"):
        unravel(torch.zeros(4))


def test_dicts_with_the_same_keys_in_another_order_are_named_as_such():
    a = {"w": torch.zeros(2), "b": torch.zeros(1)}
    with pytest.raises(ValueError, match="different order"):
        fm.tree.map(torch.add, a, {"b": torch.zeros(1), "w": torch.zeros(2)})


@pytest.mark.parametrize("op", [fm.tree.add, fm.tree.sub, fm.tree.dot])
def test_binary_ops_refuse_leaves_of_different_shapes(op):
    a = {"w": torch.ones(2, 3), "b": torch.ones(2)}
    with pytest.raises(ValueError, match=r"leaf \['b'\] has shape \(2,\) in one tree and \(1,\)"):
        op(a, {"w": torch.ones(2, 3), "b": torch.ones(1)})
    with pytest.raises(ValueError, match=r"leaf \['w'\] has shape \(2, 3\) in one tree and \(3,\)"):
        op(a, {"w": torch.ones(3), "b": torch.ones(2)})
