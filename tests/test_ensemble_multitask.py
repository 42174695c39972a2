"""fm.ensemble.evaluate on multi-task members ({task: output}), against member-by-member runs."""

import doctest

import pytest
import torch

import funcmtl as fm

TASKS = [
    fm.mtl.Task("a", "classification", 3),
    fm.mtl.Task("b", "regression", 1),
    fm.mtl.Task("c", "binary", 1),
]
K, N = 3, 17


@pytest.fixture(scope="module")
def ensemble():
    net = fm.mtl.hard_sharing_mlp(4, (8,), TASKS)
    apply, _, _ = fm.functional(net)
    params, buffers = fm.ensemble.init_members(net, fm.random.key(0), K)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    y = {"a": torch.randint(0, 3, (N,), generator=g), "b": torch.randn(N, generator=g),
         "c": torch.randint(0, 2, (N,), generator=g).float()}
    solo = [apply(fm.ensemble.member(params, k), buffers, x)[0] for k in range(K)]
    return apply, params, buffers, x, y, solo


def test_evaluate_scores_each_task_of_the_combined_and_the_mean_member(ensemble):
    apply, params, buffers, x, y, solo = ensemble
    scores = fm.ensemble.evaluate(apply, params, buffers, (x, y), tasks=TASKS, batch_size=5)
    names = [f"{t.name}/{m}" for t in TASKS for m in t.metrics]
    assert set(scores) == {f"{who}_{n}" for who in ("ensemble", "member") for n in names}
    per_member = [fm.mtl.task_metrics(TASKS, out, y) for out in solo]
    for name in names:
        expected = sum(float(m[name]) for m in per_member) / K
        assert scores[f"member_{name}"] == pytest.approx(expected, abs=1e-5)
    # The ensemble's prediction, from the definitions in float64.
    probs = sum(torch.softmax(o["a"].double(), -1) for o in solo) / K
    positive = sum(torch.sigmoid(o["c"].double()) for o in solo) / K
    combined = {
        "a": probs.log().float(),
        "b": (sum(o["b"].double() for o in solo) / K).float(),
        "c": (positive.log() - (1 - positive).log()).float(),
    }
    expected = fm.mtl.task_metrics(TASKS, combined, y)
    for name in names:
        assert scores[f"ensemble_{name}"] == pytest.approx(float(expected[name]), abs=1e-5)


def test_evaluate_with_metrics_of_the_whole_output_dict_and_a_per_task_combine(ensemble):
    apply, params, buffers, x, y, solo = ensemble

    def b_mae(outputs, targets):
        return fm.metrics.mae(outputs["b"], targets["b"])

    scores = fm.ensemble.evaluate(apply, params, buffers, (x, y), {"b_mae": b_mae},
                                  combine={"a": fm.ensemble.mean_logits,
                                           "b": lambda p: p.median(0).values,
                                           "c": lambda p: p.mean(0)})
    median = torch.stack([o["b"] for o in solo]).median(0).values
    expected = float(fm.metrics.mae(median, y["b"]))
    assert scores["ensemble_b_mae"] == pytest.approx(expected, abs=1e-6)
    expected = sum(float(fm.metrics.mae(o["b"], y["b"])) for o in solo) / K
    assert scores["member_b_mae"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match=r"multi-task outputs \['a', 'b', 'c'\] need `tasks=`"):
        fm.ensemble.evaluate(apply, params, buffers, (x, y), {"b_mae": b_mae})
    with pytest.raises(ValueError, match=r"`combine` has no entry for task 'c'"):
        fm.ensemble.evaluate(apply, params, buffers, (x, y), {"b_mae": b_mae},
                             combine={"a": fm.ensemble.mean_logits, "b": torch.mean})


def test_evaluate_docstring_example_runs_as_written():
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner()
    test = parser.get_doctest(fm.ensemble.evaluate.__doc__, {"torch": torch, "fm": fm},
                              "evaluate", None, 0)
    runner.run(test)
    assert test.examples and runner.failures == 0
