"""Metrics against scikit-learn and plain-loop references, under masks and vmap."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from torch.func import vmap

from funcmtl import metrics

N, C = 200, 6
# Class 3 is never a label, 4 never predicted, 5 neither: exercises zero_division.
LABEL_CLASSES, PRED_CLASSES = torch.tensor([0, 1, 2, 4]), torch.tensor([0, 1, 2, 3])


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _classification(gen: torch.Generator, batch: tuple[int, ...] = ()):
    """Float64 logits whose argmax lies in PRED_CLASSES, and labels in LABEL_CLASSES."""
    labels = LABEL_CLASSES[torch.randint(0, 4, (N,), generator=gen)]
    preds = PRED_CLASSES[torch.randint(0, 4, (*batch, N), generator=gen)]
    # Correlate predictions with labels so the scores are not all near chance.
    hit = torch.rand(*batch, N, generator=gen) < 0.5
    preds = torch.where(hit & (labels != 4), labels, preds)
    logits = torch.randn(*batch, N, C, generator=gen, dtype=torch.float64)
    logits = logits + 6.0 * torch.nn.functional.one_hot(preds, C)
    return logits, preds, labels


def _masks(gen: torch.Generator):
    """(name, mask, sklearn sample_weight) with a bool mask and float weights."""
    mask = torch.rand(N, generator=gen) > 0.3
    weights = torch.rand(N, generator=gen, dtype=torch.float64) * mask
    return [("none", None, None), ("bool", mask, mask.double()), ("float", weights, weights)]


def _garbage(labels: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Labels with -1 wherever the mask says missing."""
    return labels if mask is None else labels.masked_fill(mask == 0, -1)


def _close(ours: torch.Tensor, expected) -> None:
    """Equal to float64 round-off (float32 round-off where ours is float32: int preds)."""
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float64))
    tol = 1e-10 if ours.dtype == torch.float64 else 1e-6
    torch.testing.assert_close(ours.double(), expected, rtol=tol, atol=tol)


# --- classification vs scikit-learn -----------------------------------------------------------


def test_accuracy_and_confusion_matrix_match_sklearn(gen):
    logits, preds, labels = _classification(gen)
    for _, mask, weight in _masks(gen):
        noisy = _garbage(labels, mask)
        for x in (logits, preds):
            _close(metrics.accuracy(x, noisy, mask=mask),
                   skm.accuracy_score(labels, preds, sample_weight=weight))
            _close(metrics.confusion_matrix(x, noisy, C, mask=mask),
                   skm.confusion_matrix(labels, preds, labels=range(C), sample_weight=weight))
        _close(metrics.accuracy(logits, noisy, mask=mask, k=2),
               skm.top_k_accuracy_score(labels, logits, k=2, labels=range(C),
                                        sample_weight=weight))


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_precision_recall_f1_match_sklearn(gen, name, average):
    ours_fn = getattr(metrics, name)
    sk_fn = getattr(skm, f"{name}_score")
    logits, preds, labels = _classification(gen)
    for _, mask, weight in _masks(gen):
        expected = sk_fn(labels, preds, labels=range(C), average=average, zero_division=0,
                         sample_weight=weight)
        noisy = _garbage(labels, mask)
        _close(ours_fn(logits, noisy, average=average, mask=mask), expected)
        _close(ours_fn(preds, noisy, C, average=average, mask=mask), expected)
    if average is None:
        per_class = ours_fn(logits, labels, average=None)
        assert per_class.shape == (C,) and per_class[5] == 0  # class 5: no support, no pred


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_binary_matches_sklearn(gen, name):
    scores = torch.randn(N, generator=gen, dtype=torch.float64)
    labels = (torch.rand(N, generator=gen) < torch.sigmoid(2 * scores)).long()
    preds = metrics.binary_labels(scores)
    assert preds.dtype == torch.int64
    expected = getattr(skm, f"{name}_score")(labels, preds)
    _close(getattr(metrics, name)(preds, labels, 2, average="binary"), expected)
    two_class_logits = torch.stack([torch.zeros_like(scores), scores], -1)
    _close(getattr(metrics, name)(two_class_logits, labels, average="binary"), expected)
    _close(metrics.binary_labels(scores.sigmoid(), 0.5), preds)


def test_nll_and_brier_match_references(gen):
    logits = 2 * torch.randn(N, C, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, C - 1, (N,), generator=gen)  # class C-1 never occurs
    probs = logits.softmax(-1).numpy()
    for _, mask, weight in _masks(gen):
        noisy = _garbage(labels, mask)
        _close(metrics.nll(logits, noisy, mask=mask),
               skm.log_loss(labels, probs, labels=range(C), sample_weight=weight))
        _close(metrics.brier(logits, noisy, mask=mask),
               skm.brier_score_loss(labels, probs, labels=range(C), scale_by_half=False,
                                    sample_weight=weight))


def _ece_loop(logits: torch.Tensor, labels: torch.Tensor, n_bins: int, weights=None) -> float:
    """Guo et al. (2017), eq. (3), one bin at a time in float64 Python."""
    probs = logits.double().softmax(-1).tolist()
    labels = labels.tolist()
    weights = [1.0] * len(labels) if weights is None else weights.double().tolist()
    edges = [m / n_bins for m in range(n_bins + 1)]
    total, ece = sum(weights), 0.0
    for lower, upper in zip(edges[:-1], edges[1:], strict=True):
        count = correct = confidence = 0.0
        for p, y, w in zip(probs, labels, weights, strict=True):
            conf = max(p)
            if lower < conf <= upper:
                count += w
                correct += w * (p.index(conf) == y)
                confidence += w * conf
        if count > 0:
            ece += count / total * abs(correct / count - confidence / count)
    return ece


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_python_loop(gen, n_bins):
    logits = 2 * torch.randn(N, C, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, C, (N,), generator=gen)
    for _, mask, weight in _masks(gen):
        ours = metrics.ece(logits, _garbage(labels, mask), n_bins, mask=mask)
        _close(ours, _ece_loop(logits, labels, n_bins, weight))
    # A perfectly calibrated, always-right, fully confident model has ECE 0.
    sure = 100.0 * torch.nn.functional.one_hot(labels, C).double()
    assert metrics.ece(sure, labels) < 1e-12


# --- regression vs scikit-learn ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N,), (N, 3)])
def test_regression_metrics_match_sklearn(gen, shape):
    target = torch.randn(shape, generator=gen, dtype=torch.float64)
    pred = target + 0.7 * torch.randn(shape, generator=gen, dtype=torch.float64)
    for _, mask, weight in _masks(gen):
        noisy = target if mask is None else target.masked_fill(
            (mask == 0).reshape(-1, *[1] * (len(shape) - 1)), float("nan"))
        _close(metrics.mse(pred, noisy, mask=mask),
               skm.mean_squared_error(target, pred, sample_weight=weight))
        _close(metrics.mae(pred, noisy, mask=mask),
               skm.mean_absolute_error(target, pred, sample_weight=weight))
        for multioutput in ("uniform_average", "variance_weighted", "raw_values"):
            expected = skm.r2_score(target, pred, sample_weight=weight, multioutput=multioutput)
            if len(shape) == 1:
                expected = np.asarray(expected).reshape(())
            _close(metrics.r2(pred, noisy, mask=mask, multioutput=multioutput), expected)


def test_r2_constant_target_follows_sklearn():
    target = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]], dtype=torch.float64)
    for pred in (target.clone(), target + 0.5):
        for multioutput in ("uniform_average", "variance_weighted", "raw_values"):
            _close(metrics.r2(pred, target, multioutput=multioutput),
                   skm.r2_score(target, pred, multioutput=multioutput))
    constant = target[:, :1].repeat(1, 2)
    _close(metrics.r2(constant + 1, constant, multioutput="variance_weighted"),
           skm.r2_score(constant, constant + 1, multioutput="variance_weighted"))


# --- vmap and empty masks ---------------------------------------------------------------------


CLASSIFICATION = {
    "accuracy": metrics.accuracy,
    "top2_accuracy": lambda x, y, mask: metrics.accuracy(x, y, mask=mask, k=2),
    "confusion_matrix": lambda x, y, mask: metrics.confusion_matrix(x, y, mask=mask),
    "nll": metrics.nll,
    "brier": metrics.brier,
    "ece": metrics.ece,
    **{
        f"{name}_{average}": (
            lambda x, y, mask, name=name, average=average:
            getattr(metrics, name)(x, y, average=average, mask=mask)
        )
        for name in ("precision", "recall", "f1")
        for average in ("macro", "micro", "weighted", None)
    },
}
REGRESSION = {"mse": metrics.mse, "mae": metrics.mae, "r2": metrics.r2}


@pytest.mark.parametrize("name", list(CLASSIFICATION))
def test_classification_under_vmap_equals_loop(gen, name):
    fn = CLASSIFICATION[name]
    logits, _, labels = _classification(gen, batch=(5,))
    for _, mask, _ in _masks(gen):
        noisy = _garbage(labels, mask)
        batched = vmap(lambda x, noisy=noisy, mask=mask: fn(x, noisy, mask=mask))(logits)
        looped = torch.stack([fn(x, noisy, mask=mask) for x in logits])
        torch.testing.assert_close(batched, looped)
    # Labels and masks batched as well as predictions.
    masks = torch.rand(5, N, generator=gen) > 0.5
    batched = vmap(lambda x, m: fn(x, labels.masked_fill(~m, -1), mask=m))(logits, masks)
    looped = [fn(x, labels.masked_fill(~m, -1), mask=m) for x, m in zip(logits, masks, strict=True)]
    torch.testing.assert_close(batched, torch.stack(looped))


@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_under_vmap_equals_loop(gen, name):
    fn = REGRESSION[name]
    target = torch.randn(N, 3, generator=gen)
    preds = target + torch.randn(5, N, 3, generator=gen)
    for _, mask, _ in _masks(gen):
        batched = vmap(lambda p, mask=mask: fn(p, target, mask=mask))(preds)
        torch.testing.assert_close(batched, torch.stack([fn(p, target, mask=mask) for p in preds]))


@pytest.mark.parametrize("name", [*CLASSIFICATION, *REGRESSION])
def test_all_masked_gives_zero(gen, name):
    if name in REGRESSION:
        x, y, fn = torch.randn(N, 3), torch.full((N, 3), float("nan")), REGRESSION[name]
    else:
        x, y, fn = _classification(gen)[0], torch.full((N,), -1), CLASSIFICATION[name]
    for mask in (torch.zeros(N, dtype=torch.bool), torch.zeros(N)):
        out = fn(x, y, mask=mask)
        assert torch.isfinite(out).all() and (out == 0).all()


# --- checks -----------------------------------------------------------------------------------


def test_out_of_range_labels_make_confusion_metrics_nan():
    labels, preds = torch.tensor([0, 1, 3]), torch.tensor([0, 1, 1])
    assert metrics.confusion_matrix(preds, labels, 3).isnan().all()
    assert metrics.f1(preds, labels, 3).isnan()
    assert metrics.confusion_matrix(labels, preds, 3).isnan().all()  # prediction 3 of C=3
    assert vmap(lambda y: metrics.precision(preds, y, 3))(labels.repeat(2, 1)).isnan().all()
    mask = torch.tensor([True, True, False])
    torch.testing.assert_close(metrics.f1(preds, labels, 3, mask=mask), torch.tensor(2 / 3))


def test_check_labels():
    metrics.check_labels(torch.tensor([0, 2, 1]), 3)
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, num_classes\)=\[0, 3\); "
                       r"found 2 out-of-range value\(s\), the first -1 at index 1\."):
        metrics.check_labels(torch.tensor([0, -1, 3]), 3)
    metrics.check_labels(torch.tensor([0, -1, 2]), 3, mask=torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match=r"the first 7 at index \(1, 0\)\."):
        metrics.check_labels(torch.tensor([[0, 1], [7, 2]]), 3)
    with pytest.raises(ValueError, match=r"`labels` must be an integer tensor .*torch.float32"):
        metrics.check_labels(torch.tensor([0.0, 1.0]), 3)


def test_bad_input_messages():
    logits, labels = torch.randn(32, 10), torch.randint(0, 10, (32,))
    with pytest.raises(ValueError, match=r"`labels` must have shape \(N,\)=\(32,\) to match "
                       r"`logits_or_preds` \(32, 10\); got \(32, 1\)\."):
        metrics.accuracy(logits, labels[:, None])
    with pytest.raises(ValueError, match=r"`labels` must have shape \(N,\)=\(32,\) to match "
                       r"`logits` \(32, 10\); got \(31,\)\."):
        metrics.ece(logits, labels[:31])
    with pytest.raises(ValueError, match=r"`num_classes` is required when `logits_or_preds` "
                       r"are class ids\."):
        metrics.confusion_matrix(labels, labels)
    with pytest.raises(ValueError, match=r"`num_classes`=5 does not match `logits` \(32, 10\): "
                       r"expected 10\."):
        metrics.f1(logits, labels, 5)
    with pytest.raises(ValueError, match=r"`average` must be one of 'macro', 'micro', "
                       r"'weighted', 'binary' or None; got 'samples'\."):
        metrics.precision(logits, labels, average="samples")
    with pytest.raises(ValueError, match=r"`average='binary'` needs num_classes=2; got 10\."):
        metrics.recall(logits, labels, average="binary")
    with pytest.raises(ValueError, match=r"`logits_or_preds` must be floating point logits .*"
                       r"got torch.float32 \(32,\)\. For binary scores use `binary_labels`\."):
        metrics.accuracy(logits[:, 0], labels)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(N,\)=\(32,\); got \(32, 1\)"):
        metrics.accuracy(logits, labels, mask=torch.ones(32, 1))
    with pytest.raises(ValueError, match=r"`k`=11 must be at most the number of classes 10\."):
        metrics.accuracy(logits, labels, k=11)
    with pytest.raises(ValueError, match=r"`n_bins` must be a positive int; got 0\."):
        metrics.ece(logits, labels, 0)
    with pytest.raises(ValueError, match=r"`multioutput` must be 'uniform_average', "):
        metrics.r2(logits, logits, multioutput="mean")
    with pytest.raises(ValueError, match=r"`pred` must have shape \(N,\) or \(N, D\); "
                       r"got \(2, 4, 5\)\."):
        metrics.r2(torch.randn(2, 4, 5), torch.randn(2, 4, 5))
