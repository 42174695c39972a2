"""The key-driven loader: coverage, determinism and clear errors."""

import pytest
import torch

import funcmtl as fm


def dataset(n=23):
    return (torch.arange(n, dtype=torch.float32)[:, None], {"y": torch.arange(n)})


def test_each_epoch_visits_every_example_once_in_a_key_determined_order():
    data = dataset()
    key = fm.random.key(0)
    epoch0 = list(fm.data.batches(data, 5, key=key, epoch=0))
    assert [len(b[1]["y"]) for b in epoch0] == [5, 5, 5, 5, 3]
    order0 = torch.cat([b[1]["y"] for b in epoch0])
    assert torch.equal(torch.sort(order0).values, torch.arange(23))
    assert torch.equal(torch.cat([b[0][:, 0] for b in epoch0]).long(), order0)  # rows aligned
    again = torch.cat([b[1]["y"] for b in fm.data.batches(data, 5, key=key, epoch=0)])
    other = torch.cat([b[1]["y"] for b in fm.data.batches(data, 5, key=key, epoch=1)])
    assert torch.equal(order0, again) and not torch.equal(order0, other)
    unshuffled = torch.cat([b[1]["y"] for b in fm.data.batches(data, 5)])
    assert torch.equal(unshuffled, torch.arange(23))
    assert len(list(fm.data.batches(data, 5, key=key, drop_last=True))) == 4


def test_random_split_is_disjoint_covering_and_deterministic():
    data = dataset(100)
    parts = fm.data.random_split(data, (0.7, 0.2, 0.1), key=fm.random.key(1))
    ids = [p[1]["y"] for p in parts]
    assert [len(i) for i in ids] == [70, 20, 10]
    assert torch.equal(torch.sort(torch.cat(ids)).values, torch.arange(100))
    again = fm.data.random_split(data, (0.7, 0.2, 0.1), key=fm.random.key(1))
    assert all(torch.equal(a[1]["y"], b[1]["y"]) for a, b in zip(parts, again, strict=True))


def test_bad_datasets_are_rejected_with_clear_messages():
    expected = r"share the leading example axis N; got shapes \[\(3, 1\), \(4,\)\]"
    with pytest.raises(ValueError, match=expected):
        fm.data.num_examples((torch.zeros(3, 1), torch.zeros(4)))
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer; got 0"):
        next(fm.data.batches(dataset(), 0))
    with pytest.raises(ValueError, match=r"sum to 1; got \(0.5, 0.2\)"):
        fm.data.random_split(dataset(), (0.5, 0.2), key=fm.random.key(0))


@pytest.mark.parametrize(
    "generate, classes",
    [
        (lambda key, n: fm.data.spirals(key, n, arms=3, noise=0.1), 3),
        (lambda key, n: fm.data.blobs(key, n, classes=5, spread=0.5), 5),
    ],
    ids=["spirals", "blobs"],
)
def test_synthetic_data_is_a_pure_function_of_the_key(generate, classes):
    x, y = generate(fm.random.key(0), 3000)
    assert x.shape == (3000, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert y.shape == (3000,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=classes)
    assert len(counts) == classes and counts.min() > 0.8 * 3000 / classes  # balanced
    again, other = generate(fm.random.key(0), 3000), generate(fm.random.key(1), 3000)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(x, other[0])
