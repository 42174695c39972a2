"""Keys: determinism, independence, vmap behaviour, and the torch-generator bridge."""

import pytest
import torch

import funcmtl as fm
from funcmtl import random as fr


def test_same_key_same_numbers_different_keys_different_numbers():
    k = fr.key(42)
    assert torch.equal(fr.normal(k, (100,)), fr.normal(fr.key(42), (100,)))
    assert not torch.equal(fr.normal(k, (100,)), fr.normal(fr.key(43), (100,)))
    a, b = fr.split(k)
    assert not torch.equal(fr.uniform(a, (50,)), fr.uniform(b, (50,)))
    assert not torch.equal(fr.fold_in(k, 1), fr.fold_in(k, 2))
    assert torch.equal(fr.fold_in(k, 7), fr.fold_in(k, torch.tensor(7)))


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3])
def test_distributions_have_the_right_moments(seed):
    n = 200_000
    u = fr.uniform(fr.key(seed), (n,))
    z = fr.normal(fr.key(seed), (n,))
    # 6 standard errors: fails only for a broken generator.
    assert abs(u.mean() - 0.5) < 6 * (1 / 12) ** 0.5 / n**0.5
    assert abs(u.var() - 1 / 12) < 0.002
    assert 0.0 < u.min() and u.max() < 1.0
    assert abs(z.mean()) < 6 / n**0.5
    assert abs(z.std() - 1.0) < 0.01
    assert abs(fr.bernoulli(fr.key(seed), 0.3, (n,)).float().mean() - 0.3) < 0.01
    ints = fr.randint(fr.key(seed), (n,), 2, 7)
    assert ints.min() == 2 and ints.max() == 6
    counts = torch.bincount(ints - 2, minlength=5).float() / n
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.01)


def test_streams_of_related_keys_are_uncorrelated():
    k = fr.key(5)
    pairs = [(fr.key(1), fr.key(2)), tuple(fr.split(k)), (fr.fold_in(k, 0), fr.fold_in(k, 1))]
    for a, b in pairs:
        x, y = fr.uniform(a, (100_000,)), fr.uniform(b, (100_000,))
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1]) < 0.02


def test_permutation_is_a_permutation():
    p = fr.permutation(fr.key(3), 1000)
    assert torch.equal(torch.sort(p).values, torch.arange(1000))


def test_vmap_over_keys_equals_solo_calls():
    keys = fr.split(fr.key(0), 6)
    batched = torch.func.vmap(lambda k: fr.normal(fr.fold_in(k, 3), (4, 5)))(keys)
    for i in range(6):
        assert torch.equal(batched[i], fr.normal(fr.fold_in(keys[i], 3), (4, 5)))


def test_torch_seed_is_reproducible_and_restores_the_global_generator():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with fr.torch_seed(fr.key(9)):
        a = torch.randn(5)
    with fr.torch_seed(fr.key(9)):
        b = torch.randn(5)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected_next)


def test_bad_keys_and_seeds_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match=r"`seed` must be an integer in \[0, 2\*\*64\); got -1"):
        fr.key(-1)
    with pytest.raises(ValueError, match=r"int64 tensor of shape \(2,\).*got torch.float32"):
        fr.normal(torch.zeros(2), (3,))
    with pytest.raises(ValueError, match="`num` must be a positive integer; got 0"):
        fr.split(fr.key(0), 0)
    assert fm.random is fr


def test_batched_fold_in_and_permutation_equal_one_key_at_a_time():
    k = fr.key(4)
    data = torch.tensor([0, 5, 2**33 + 1])
    batched = fr.fold_in(k, data)
    assert batched.shape == (3, 2)
    for i, d in enumerate(data.tolist()):
        assert torch.equal(batched[i], fr.fold_in(k, d))
    keys = fr.split(k, 5)
    orders = fr.permutation(keys, 7)
    assert orders.shape == (5, 7)
    for i in range(5):
        assert torch.equal(orders[i], fr.permutation(keys[i], 7))


def test_batched_keys_map_over_leading_axes_like_vmap():
    keys = fr.split(fr.key(0), 3)  # (3, 2)
    grid = keys.reshape(3, 1, 2).expand(3, 2, 2)  # (3, 2, 2): two batch axes
    data = torch.tensor([4, 2**33 + 1])
    folded = fr.fold_in(keys, 7)
    assert folded.shape == (3, 2)
    assert fr.fold_in(keys, data).shape == (3, 2, 2)
    assert fr.split(grid, 4).shape == (3, 2, 4, 2)
    for i in range(3):
        assert torch.equal(folded[i], fr.fold_in(keys[i], 7))
        assert torch.equal(fr.fold_in(keys, data)[i], fr.fold_in(keys[i], data))
        assert torch.equal(fr.split(keys, 4)[i], fr.split(keys[i], 4))
        assert torch.equal(fr.split(grid, 4)[i, 1], fr.split(keys[i], 4))
        for draw in (
            lambda k: fr.uniform(k, (2, 5)),
            lambda k: fr.normal(k, (5,), dtype=torch.float64),
            lambda k: fr.bernoulli(k, 0.3, (6,)),
            lambda k: fr.randint(k, (4,), 0, 9),
        ):
            assert torch.equal(draw(keys)[i], draw(keys[i]))
    # The batched call is the vmapped one (where each member sees a single key).
    vmapped = torch.func.vmap(lambda k: fr.uniform(fr.fold_in(k, 7), (5,)))(keys)
    assert torch.equal(vmapped, fr.uniform(fr.fold_in(keys, 7), (5,)))


def test_keys_that_need_a_single_key_refuse_a_batch_clearly():
    keys = fr.split(fr.key(0), 3)
    single = r"`key` must be a single key of shape \(2,\); got \(3, 2\)"
    with pytest.raises(ValueError, match=single):
        fr.key_to_seed(keys)
    with pytest.raises(ValueError, match=single):
        fm.init(torch.nn.Linear(2, 2), keys)
    apply, params, buffers = fm.functional(torch.nn.Sequential(torch.nn.Dropout(0.5)))
    with pytest.raises(ValueError, match=single + r".*vmap"):
        apply(params, buffers, torch.ones(4, 3), train=True, key=keys)
    with pytest.raises(ValueError, match=r"shape \(2,\).*got torch.int64 tensor of shape \(\)"):
        fr.fold_in(torch.tensor(3), 1)
