"""Combining ensemble members, checked against float64 loops, plus ensemble predict/evaluate.

Every reference below is written from the definition with numpy and explicit loops over
members, examples and classes; none calls the code under test.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import funcmtl as fm

E = fm.ensemble


def make_logits(members=5, examples=40, classes=3, seed=0, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(members, examples, classes, generator=g)).to(dtype)


# ---------------------------------------------------------------- float64 loop references


def ref_softmax(row):
    shifted = [v - max(row) for v in row]
    total = sum(math.exp(v) for v in shifted)
    return [math.exp(v) / total for v in shifted]


def ref_argmax(row):
    best = 0
    for c in range(len(row)):
        if row[c] > row[best]:
            best = c
    return best


def ref_entropy(p):
    return -sum(pc * math.log(pc) for pc in p if pc > 0)


def as_lists(logits):
    return logits.detach().to(torch.float64).numpy().tolist()


def ref_mean_probs(logits):
    x = as_lists(logits)
    members, examples, classes = len(x), len(x[0]), len(x[0][0])
    out = np.zeros((examples, classes))
    for k in range(members):
        for n in range(examples):
            p = ref_softmax(x[k][n])
            for c in range(classes):
                out[n, c] += p[c] / members
    return out


def ref_mean_log_probs(logits):
    return np.log(ref_mean_probs(logits))


def ref_mean_logits(logits):
    x = as_lists(logits)
    members, examples, classes = len(x), len(x[0]), len(x[0][0])
    out = np.zeros((examples, classes))
    for k in range(members):
        for n in range(examples):
            for c in range(classes):
                out[n, c] += x[k][n][c] / members
    return out


def ref_vote(logits):
    x = as_lists(logits)
    members, examples, classes = len(x), len(x[0]), len(x[0][0])
    out = np.zeros(examples, dtype=np.int64)
    for n in range(examples):
        counts = [0] * classes
        for k in range(members):
            counts[ref_argmax(x[k][n])] += 1
        best = 0
        for c in range(classes):
            if counts[c] > counts[best]:  # strict: a tie keeps the smaller class
                best = c
        out[n] = best
    return out


def ref_mean_and_variance(predictions):
    x = predictions.detach().to(torch.float64).numpy()
    members = x.shape[0]
    mean = np.zeros(x.shape[1:])
    for k in range(members):
        mean += x[k] / members
    variance = np.zeros(x.shape[1:])
    for k in range(members):
        variance += (x[k] - mean) ** 2 / members  # population variance
    return mean, variance


def ref_predictive_entropy(logits):
    return np.array([ref_entropy(row) for row in ref_mean_probs(logits).tolist()])


def ref_expected_entropy(logits):
    x = as_lists(logits)
    members, examples = len(x), len(x[0])
    out = np.zeros(examples)
    for k in range(members):
        for n in range(examples):
            out[n] += ref_entropy(ref_softmax(x[k][n])) / members
    return out


def ref_mutual_information(logits):
    return ref_predictive_entropy(logits) - ref_expected_entropy(logits)


def ref_disagreement(logits):
    x = as_lists(logits)
    majority = ref_vote(logits)
    members, examples = len(x), len(x[0])
    out = np.zeros(examples)
    for n in range(examples):
        for k in range(members):
            out[n] += (ref_argmax(x[k][n]) != majority[n]) / members
    return out


def ref_pairwise_disagreement(logits):
    x = as_lists(logits)
    members, examples = len(x), len(x[0])
    out = np.zeros((members, members))
    for i in range(members):
        for j in range(members):
            differ = sum(ref_argmax(x[i][n]) != ref_argmax(x[j][n]) for n in range(examples))
            out[i, j] = differ / examples
    return out


CASES = {
    "mean_probs": (E.mean_probs, ref_mean_probs),
    "mean_log_probs": (E.mean_log_probs, ref_mean_log_probs),
    "mean_logits": (E.mean_logits, ref_mean_logits),
    "vote": (E.vote, ref_vote),
    "mean_and_variance": (E.mean_and_variance, ref_mean_and_variance),
    "predictive_entropy": (E.predictive_entropy, ref_predictive_entropy),
    "expected_entropy": (E.expected_entropy, ref_expected_entropy),
    "mutual_information": (E.mutual_information, ref_mutual_information),
    "disagreement": (E.disagreement, ref_disagreement),
    "pairwise_disagreement": (E.pairwise_disagreement, ref_pairwise_disagreement),
}
CLASSIFICATION = [name for name in CASES if name != "mean_and_variance"]


def assert_matches(found, expected, atol):
    found = found if isinstance(found, tuple) else (found,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        assert tuple(f.shape) == e.shape
        np.testing.assert_allclose(f.detach().to(torch.float64).numpy(), e, rtol=0, atol=atol)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)], ids=["f64", "f32"]
)
@pytest.mark.parametrize("shape", [(5, 40, 3), (2, 7, 6), (1, 4, 2)], ids=str)
def test_matches_loop_reference(name, dtype, atol, shape):
    fn, reference = CASES[name]
    logits = make_logits(*shape, seed=sum(shape), dtype=dtype)
    if name in ("disagreement", "pairwise_disagreement"):
        atol = max(atol, 1e-6)  # fractions come back as float32 whatever the logits' dtype
    assert_matches(fn(logits), reference(logits), atol)


def test_mean_and_variance_of_regression_predictions_with_trailing_axes():
    predictions = make_logits(4, 6, 2, seed=3)[..., None].expand(4, 6, 2, 3) * torch.arange(3.0)
    assert_matches(
        E.mean_and_variance(predictions), ref_mean_and_variance(predictions), atol=1e-10
    )
    mean, variance = E.mean_and_variance(make_logits(3, 5, 1, seed=4)[..., 0])  # (K, N)
    assert mean.shape == variance.shape == (5,)


def test_vote_and_disagreement_reference_cases_cover_ties():
    # Random votes of 5 members over 3 classes include ties (2-2-1): the references
    # handle them the documented way, so this checks the fixture exercises them.
    logits = make_logits(4, 200, 3, seed=11)
    counts = torch.nn.functional.one_hot(logits.argmax(-1), 3).sum(0)
    assert ((counts == counts.max(-1, keepdim=True).values).sum(-1) > 1).any()
    assert torch.equal(E.vote(logits), torch.from_numpy(ref_vote(logits)))


# ---------------------------------------------------------------------------- properties


@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_mutual_information_is_nonnegative_and_entropies_are_ordered(scale):
    logits = make_logits(6, 300, 5, seed=1, scale=scale, dtype=torch.float32)
    total, aleatoric = E.predictive_entropy(logits), E.expected_entropy(logits)
    assert (E.mutual_information(logits) >= 0).all()
    assert (total <= math.log(5) + 1e-6).all() and (total >= 0).all()
    assert (total >= aleatoric - 1e-6).all()  # Jensen: H is concave


def test_mutual_information_is_zero_when_members_agree():
    one = make_logits(1, 100, 4, seed=2, scale=10.0, dtype=torch.float32)
    logits = one.expand(7, 100, 4)
    mi = E.mutual_information(logits)
    assert mi.shape == (100,)
    assert mi.abs().max() <= 1e-6
    assert torch.equal(E.disagreement(logits), torch.zeros(100))
    assert torch.equal(E.pairwise_disagreement(logits), torch.zeros(7, 7))


def test_predictive_entropy_is_log_c_for_uniform_members_and_bounded():
    logits = torch.zeros(3, 5, 4)
    torch.testing.assert_close(E.predictive_entropy(logits), torch.full((5,), math.log(4)))
    # Two confident members that disagree: total entropy log 2, all of it epistemic.
    split = torch.tensor([[[50.0, 0.0]], [[0.0, 50.0]]])
    torch.testing.assert_close(E.predictive_entropy(split), torch.tensor([math.log(2)]))
    torch.testing.assert_close(E.mutual_information(split), torch.tensor([math.log(2)]))


def test_vote_tie_goes_to_smallest_class():
    def one_hot_logits(classes_per_member, num_classes=4):
        rows = torch.nn.functional.one_hot(torch.tensor(classes_per_member), num_classes)
        return rows.float()[:, None, :]  # (K, 1, C)

    assert E.vote(one_hot_logits([2, 2, 1, 1])).tolist() == [1]
    assert E.vote(one_hot_logits([3, 0, 3, 0])).tolist() == [0]
    assert E.vote(one_hot_logits([3, 2, 1])).tolist() == [1]
    assert E.vote(one_hot_logits([3, 3, 1])).tolist() == [3]
    assert E.vote(one_hot_logits([3, 2, 1])).dtype == torch.int64
    # 2 of 4 members disagree with the tie-broken vote (class 1).
    torch.testing.assert_close(E.disagreement(one_hot_logits([2, 2, 1, 1])), torch.tensor([0.5]))


def test_exp_mean_log_probs_is_mean_probs_and_stays_finite_where_probs_underflow():
    logits = make_logits(5, 50, 6, seed=5, dtype=torch.float32)
    torch.testing.assert_close(E.mean_log_probs(logits).exp(), E.mean_probs(logits))
    # softmax underflows to 0 in float32 here; the log-space mean does not.
    far = torch.tensor([[[0.0, -200.0]], [[0.0, -300.0]]])
    assert E.mean_probs(far)[0, 1] == 0
    expected = -200.0 - math.log(2.0) + math.log1p(math.exp(-100.0))
    torch.testing.assert_close(
        E.mean_log_probs(far), torch.tensor([[0.0, expected]]), rtol=1e-6, atol=1e-6
    )


def test_pairwise_disagreement_is_symmetric_with_zero_diagonal():
    d = E.pairwise_disagreement(make_logits(6, 80, 4, seed=6))
    assert d.shape == (6, 6)
    torch.testing.assert_close(d, d.T)
    assert torch.equal(d.diagonal(), torch.zeros(6, dtype=d.dtype))
    assert ((d >= 0) & (d <= 1)).all() and (d > 0).any()


@pytest.mark.parametrize("name", list(CASES))
def test_vmap_over_an_extra_leading_batch_equals_one_by_one(name):
    fn, _ = CASES[name]
    batch = torch.stack([make_logits(4, 9, 3, seed=20 + b) for b in range(3)])  # (B, K, N, C)
    vmapped = torch.func.vmap(fn)(batch)
    looped = [fn(batch[b]) for b in range(3)]
    if isinstance(vmapped, tuple):
        for part, parts in zip(vmapped, zip(*looped, strict=True), strict=True):
            torch.testing.assert_close(part, torch.stack(parts), rtol=0, atol=1e-12)
    else:
        torch.testing.assert_close(vmapped, torch.stack(looped), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    ("bad", "found"),
    [(torch.zeros(6), r"got \(6,\)"), (torch.tensor(1.0), r"got \(\)"), ([[1.0]], "got list")],
    ids=["1d", "0d", "list"],
)
def test_input_without_member_axis_is_a_value_error_naming_expected_and_found(name, bad, found):
    fn, _ = CASES[name]
    argument = "predictions" if name == "mean_and_variance" else "logits"
    with pytest.raises(ValueError, match=rf"`{argument}` must have a leading member axis.*{found}"):
        fn(bad)
    expected = r"\(K, N, \.\.\.\)" if name == "mean_and_variance" else r"\(K, N, C\)"
    with pytest.raises(ValueError, match=expected):
        fn(bad)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_two_dimensional_logits_without_member_axis_are_a_value_error(name):
    fn, _ = CASES[name]
    with pytest.raises(ValueError, match=r"\(K, N, C\).*got \(10, 3\)"):
        fn(torch.randn(10, 3))


# ------------------------------------------------------- predict / member_scores / evaluate

MEMBERS, INPUTS, CLASSES = 3, 5, 4


@pytest.fixture(scope="module")
def stacked_mlp():
    net = nn.Sequential(
        nn.Linear(INPUTS, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, CLASSES)
    )
    apply, _, _ = fm.functional(net)
    params, buffers = E.init_members(net, fm.random.key(0), MEMBERS)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, INPUTS, generator=g)
    y = torch.randint(0, CLASSES, (23,), generator=g)
    return apply, params, buffers, x, y


def solo(stacked, k):
    return {name: leaf[k] for name, leaf in stacked.items()}


def test_predict_stacks_every_members_solo_eval_outputs(stacked_mlp):
    apply, params, buffers, x, _ = stacked_mlp
    outputs = E.predict(apply, params, buffers, x, batch_size=10)  # 3 batches: 10, 10, 3
    assert outputs.shape == (MEMBERS, 23, CLASSES)
    for k in range(MEMBERS):
        alone, _ = apply(solo(params, k), solo(buffers, k), x)
        torch.testing.assert_close(outputs[k], alone, rtol=0, atol=1e-6)
    assert not torch.allclose(outputs[0], outputs[1])  # members are initialised apart
    chunked = E.predict(apply, params, buffers, x, chunk_size=2)
    torch.testing.assert_close(chunked, outputs, rtol=0, atol=1e-6)


METRICS = {
    "accuracy": fm.metrics.accuracy,
    "nll": fm.metrics.nll,
    "ece": fm.metrics.ece,
    "brier": fm.metrics.brier,
}


def test_member_scores_is_the_metric_of_each_member(stacked_mlp):
    apply, params, buffers, x, y = stacked_mlp
    outputs = E.predict(apply, params, buffers, x)
    for metric in METRICS.values():
        scores = E.member_scores(metric, outputs, y)
        assert scores.shape == (MEMBERS,)
        looped = torch.stack([metric(outputs[k], y) for k in range(MEMBERS)])
        torch.testing.assert_close(scores, looped, rtol=0, atol=1e-6)


def test_evaluate_reports_the_combined_metric_and_the_mean_member_metric(stacked_mlp):
    apply, params, buffers, x, y = stacked_mlp
    scores = E.evaluate(apply, params, buffers, (x, y), METRICS, batch_size=8)
    assert set(scores) == {f"{who}_{m}" for who in ("ensemble", "member") for m in METRICS}

    members = [apply(solo(params, k), solo(buffers, k), x)[0] for k in range(MEMBERS)]
    probs = sum(torch.softmax(o.double(), dim=-1) for o in members) / MEMBERS
    combined = probs.log().float()  # log of the mean probability
    for name, metric in METRICS.items():
        assert scores[f"ensemble_{name}"] == pytest.approx(float(metric(combined, y)), abs=1e-5)
        mean_member = sum(float(metric(o, y)) for o in members) / MEMBERS
        assert scores[f"member_{name}"] == pytest.approx(mean_member, abs=1e-5)
    # An ensemble of members is at least as good in NLL as its average member (Jensen).
    assert scores["ensemble_nll"] <= scores["member_nll"] + 1e-6


def test_evaluate_with_a_custom_combine(stacked_mlp):
    apply, params, buffers, x, y = stacked_mlp
    scores = E.evaluate(
        apply, params, buffers, (x, y), {"nll": fm.metrics.nll}, combine=lambda o: o.mean(0)
    )
    members = [apply(solo(params, k), solo(buffers, k), x)[0] for k in range(MEMBERS)]
    mean_logits = sum(members) / MEMBERS
    assert scores["ensemble_nll"] == pytest.approx(float(fm.metrics.nll(mean_logits, y)), abs=1e-5)
