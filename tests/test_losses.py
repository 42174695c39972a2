"""Losses against torch.nn.functional, a float64 re-computation, masks and vmap."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from funcmtl import losses, metrics

N, C, D = 32, 5, 3


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _classification(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return 3 * torch.randn(N, C, generator=gen), torch.randint(0, C, (N,), generator=gen)


def _regression(gen: torch.Generator, shape=(N, D)) -> tuple[torch.Tensor, torch.Tensor]:
    return 2 * torch.randn(shape, generator=gen), 2 * torch.randn(shape, generator=gen)


# Each elementwise loss next to its torch.nn.functional reference and a float64 formula.
ELEMENTWISE = {
    "mse": (losses.mse, F.mse_loss, lambda r: r**2),
    "l1": (losses.l1, F.l1_loss, lambda r: r.abs()),
    "huber": (
        losses.huber,
        F.huber_loss,
        lambda r: torch.where(r.abs() <= 1, 0.5 * r**2, r.abs() - 0.5),
    ),
    "huber_delta": (
        lambda p, t, **kw: losses.huber(p, t, delta=0.3, **kw),
        lambda p, t: F.huber_loss(p, t, delta=0.3),
        lambda r: torch.where(r.abs() <= 0.3, 0.5 * r**2, 0.3 * (r.abs() - 0.15)),
    ),
    "bce": (
        losses.binary_cross_entropy,
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
        lambda x, t: -(t * torch.log(torch.sigmoid(x)) + (1 - t) * torch.log(1 - torch.sigmoid(x))),
    ),
}


def _elementwise_inputs(name: str, gen: torch.Generator, shape=(N, D)):
    pred, target = _regression(gen, shape)
    if name == "bce":
        target = torch.rand(shape, generator=gen)
    return pred, target


def _reference64(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    formula = ELEMENTWISE[name][2]
    pred, target = pred.double(), target.double()
    return formula(pred, target) if name == "bce" else formula(pred - target)


# --- agreement with torch.nn.functional and float64 ------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_cross_entropy_matches_torch_and_float64(gen, smoothing):
    logits, labels = _classification(gen)
    ours = losses.cross_entropy(logits, labels, label_smoothing=smoothing)
    assert ours.shape == ()
    torch.testing.assert_close(ours, F.cross_entropy(logits, labels, label_smoothing=smoothing))
    # float64: log pᵢ[c] = xᵢ[c] - log Σ exp x, target distribution (1 - ε) onehot + ε / C.
    x = logits.double()
    log_p = x - x.exp().sum(-1, keepdim=True).log()
    q = (1 - smoothing) * F.one_hot(labels, C).double() + smoothing / C
    torch.testing.assert_close(ours.double(), -(q * log_p).sum(-1).mean(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(N,), (N, D)])
def test_elementwise_matches_torch_and_float64(gen, name, shape):
    ours_fn, torch_fn, _ = ELEMENTWISE[name]
    pred, target = _elementwise_inputs(name, gen, shape)
    ours = ours_fn(pred, target)
    assert ours.shape == ()
    torch.testing.assert_close(ours, torch_fn(pred, target))
    reference = _reference64(name, pred, target).mean()
    torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-6)


def test_bce_pos_weight_and_extreme_logits():
    logits = torch.tensor([[-1000.0, 0.0, 1000.0], [50.0, -50.0, 3.0]])
    targets = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    pos_weight = torch.tensor([2.0, 0.5, 3.0])
    ours = losses.binary_cross_entropy(logits, targets, pos_weight=pos_weight)
    assert torch.isfinite(ours)
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(
        losses.binary_cross_entropy(logits, targets, pos_weight=2.0),
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(2.0)),
    )
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(losses.binary_cross_entropy(logits, targets), logits)
    assert torch.isfinite(grad).all()


# --- masks ------------------------------------------------------------------------------------


def _mask(gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(N, generator=gen) > 0.4
    mask[:2] = torch.tensor([True, False])
    return mask


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_mask_equals_subset_and_ignores_garbage(gen, smoothing):
    logits, labels = _classification(gen)
    mask = _mask(gen)
    garbage = torch.where(mask, labels, torch.tensor([-1, 10**6]).repeat(N // 2))
    logits.requires_grad_(True)
    ours = losses.cross_entropy(logits, garbage, mask=mask, label_smoothing=smoothing)
    expected = F.cross_entropy(logits[mask], labels[mask], label_smoothing=smoothing)
    torch.testing.assert_close(ours, expected)
    (grad,) = torch.autograd.grad(ours, logits)
    assert torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    # Float weights give the weighted mean.
    weights = torch.rand(N, generator=gen) * mask
    per_example = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(
        losses.cross_entropy(logits, garbage, mask=weights),
        (per_example * weights).sum() / weights.sum(),
    )


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_mask_equals_subset_and_ignores_nan(gen, name):
    ours_fn, torch_fn, _ = ELEMENTWISE[name]
    pred, target = _elementwise_inputs(name, gen)
    mask = _mask(gen)
    garbage = torch.where(mask[:, None], target, float("nan"))
    pred.requires_grad_(True)
    ours = ours_fn(pred, garbage, mask=mask)
    # Mask (N,) on pred (N, D): the mean runs over every element of each valid row.
    torch.testing.assert_close(ours, torch_fn(pred[mask], target[mask]))
    (grad,) = torch.autograd.grad(ours, pred)
    assert torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    # An elementwise mask (N, D) averages over valid elements only.
    element_mask = torch.rand(N, D, generator=gen) > 0.5
    garbage = torch.where(element_mask, target, float("nan"))
    torch.testing.assert_close(
        ours_fn(pred, garbage, mask=element_mask),
        torch_fn(pred[element_mask], target[element_mask]),
    )
    # Float weights give the weighted mean.
    weights = torch.rand(N, generator=gen)
    elementwise = _reference64(name, pred.detach(), target).float()
    expected = (elementwise * weights[:, None]).sum() / (weights.sum() * D)
    torch.testing.assert_close(ours_fn(pred, target, mask=weights), expected)


@pytest.mark.parametrize("name", ["cross_entropy", *ELEMENTWISE])
def test_all_masked_is_exactly_zero_with_zero_grad(gen, name):
    if name == "cross_entropy":
        pred, _ = _classification(gen)
        target = torch.full((N,), -1)
        fn = losses.cross_entropy
    else:
        pred, _ = _elementwise_inputs(name, gen)
        target = torch.full((N, D), float("nan"))
        fn = ELEMENTWISE[name][0]
    pred.requires_grad_(True)
    for mask in (torch.zeros(N, dtype=torch.bool), torch.zeros(N)):
        loss = fn(pred, target, mask=mask)
        assert loss.shape == () and loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, pred)
        assert (grad == 0).all()


# --- vmap -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cross_entropy", *ELEMENTWISE])
def test_vmap_over_five_prediction_sets_equals_loop(gen, name):
    mask = _mask(gen)
    if name == "cross_entropy":
        preds = 3 * torch.randn(5, N, C, generator=gen)
        clean = torch.randint(0, C, (N,), generator=gen)
        target = clean.masked_fill(~mask, -1)

        def fn(p, t, mask):
            return losses.cross_entropy(p, t, mask=mask, label_smoothing=0.1)
    else:
        preds = 2 * torch.randn(5, N, D, generator=gen)
        _, clean = _elementwise_inputs(name, gen)
        target = clean.masked_fill(~mask[:, None], float("nan"))
        fn = ELEMENTWISE[name][0]
    batched = vmap(lambda p: fn(p, target, mask=mask))(preds)
    looped = torch.stack([fn(p, target, mask=mask) for p in preds])
    assert batched.shape == (5,)
    torch.testing.assert_close(batched, looped)
    # Batched masks too (each member its own missing labels).
    masks = torch.rand(5, N, generator=gen) > 0.5
    batched = vmap(lambda p, m: fn(p, clean, mask=m))(preds, masks)
    looped = torch.stack([fn(p, clean, mask=m) for p, m in zip(preds, masks, strict=True)])
    torch.testing.assert_close(batched, looped)


def test_vmap_grad_per_member(gen):
    params = torch.randn(5, C, generator=gen)
    x, labels = torch.randn(N, C, generator=gen), torch.randint(0, C, (N,), generator=gen)
    mask = _mask(gen)

    def loss_fn(w):
        return losses.cross_entropy(x * w, labels, mask=mask)

    grads = vmap(torch.func.grad(loss_fn))(params)
    torch.testing.assert_close(grads, torch.stack([torch.func.grad(loss_fn)(w) for w in params]))


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_messages():
    logits, labels = torch.randn(32, 10), torch.randint(0, 10, (32,))
    with pytest.raises(ValueError, match=r"`labels` must have shape \(N,\)=\(32,\) to match "
                       r"`logits` \(32, 10\); got \(32, 1\)\."):
        losses.cross_entropy(logits, labels[:, None])
    with pytest.raises(ValueError, match=r"`labels` must be integer class ids .*torch.float32"):
        losses.cross_entropy(logits, labels.float())
    with pytest.raises(ValueError, match=r"`logits` must have shape \(N, C\); got \(32,\)\."):
        losses.cross_entropy(logits[:, 0], labels)
    with pytest.raises(ValueError, match=r"`logits` must be a floating point tensor"):
        losses.cross_entropy(labels[:, None].repeat(1, 3), labels)
    with pytest.raises(ValueError, match=r"`label_smoothing` must lie in \[0, 1\]; got 1.5\."):
        losses.cross_entropy(logits, labels, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(N,\)=\(32,\); got \(31,\)\."):
        losses.cross_entropy(logits, labels, mask=torch.ones(31, dtype=torch.bool))
    pred = torch.randn(32, 3)
    with pytest.raises(ValueError, match=r"`target` must have the shape of `pred` \(32, 3\); "
                       r"got \(32,\)\."):
        losses.mse(pred, pred[:, 0])
    with pytest.raises(ValueError, match=r"`mask` must have shape \(N,\)=\(32,\) or the shape "
                       r"of `pred` \(32, 3\); got \(32, 2\)\."):
        losses.l1(pred, pred, mask=torch.ones(32, 2))
    with pytest.raises(ValueError, match=r"`delta` must be positive; got 0\."):
        losses.huber(pred, pred, delta=0)
    with pytest.raises(ValueError, match=r"`targets` must have the shape of `logits`"):
        losses.binary_cross_entropy(pred, pred[:, :2])
    with pytest.raises(ValueError, match=r"`pos_weight` must broadcast to `logits.shape\[1:\]` "
                       r"\(3,\); got \(2,\)\."):
        losses.binary_cross_entropy(pred, pred.sigmoid(), pos_weight=torch.ones(2))


@pytest.mark.parametrize("name", ["mse", "l1", "huber", "binary_cross_entropy"])
def test_float64_targets_are_cast_to_the_prediction_dtype(name):
    # A DataLoader collates numpy float64 targets to float64: the loss stays in pred's dtype.
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(8, 2, generator=g, requires_grad=True)
    target = torch.rand(8, 2, generator=g, dtype=torch.float64)
    loss = getattr(losses, name)(pred, target)
    assert loss.dtype == torch.float32
    reference = getattr(losses, name)(pred.detach().double(), target)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad.dtype == torch.float32
    r2 = metrics.r2(pred.detach(), target)
    assert r2.dtype == torch.float32
    torch.testing.assert_close(r2.double(), metrics.r2(pred.detach().double(), target),
                               rtol=1e-5, atol=1e-6)
