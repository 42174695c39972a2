"""A task with no labelled example in a batch: metrics are NaN (not measured), losses 0."""

import math

import torch

import funcmtl as fm
from funcmtl.mtl import Task, task_losses, task_metrics

NAN = float("nan")
TASKS = [
    Task("a", "classification", 3, mask_value=-1),
    Task("b", "regression", 1, mask_value=NAN),
    Task("c", "binary", 1, mask_value=NAN),
]


def batch(labelled_a: bool, n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    outputs = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, generator=g),
               "c": torch.randn(n, generator=g)}
    targets = {
        "a": torch.randint(0, 3, (n,), generator=g) if labelled_a else torch.full((n,), -1),
        "b": torch.full((n,), NAN),  # never labelled
        "c": torch.randint(0, 2, (n,), generator=g).float(),
    }
    return outputs, targets


def test_metrics_of_a_task_without_labels_are_nan_and_its_loss_is_zero():
    outputs, targets = batch(labelled_a=False)
    scores = task_metrics(TASKS, outputs, targets)
    for name in ("a/accuracy", "a/f1", "b/mse", "b/mae", "b/r2"):
        assert math.isnan(scores[name]), name
    hits = ((outputs["c"] > 0).float() == targets["c"]).float().mean()
    torch.testing.assert_close(scores["c/accuracy"], hits)
    assert torch.equal(task_losses(TASKS, outputs, targets)[:2], torch.zeros(2))
    # An explicit mask that drops every example of a labelled task: NaN as well.
    outputs, targets = batch(labelled_a=True)
    masked = task_metrics(TASKS, outputs, targets, masks={"a": torch.zeros(6)})
    assert math.isnan(masked["a/accuracy"]) and not math.isnan(scores["c/accuracy"])
    # Under vmap (an ensemble), member by member.
    stacked = {k: torch.stack([v, v + 1]) for k, v in outputs.items()}
    batched = torch.func.vmap(lambda o: task_metrics(TASKS, o, targets))(stacked)
    assert batched["b/mse"].isnan().all() and not batched["a/accuracy"].isnan().any()


def test_the_mtl_step_trains_on_labelled_tasks_only_and_reports_nan_for_the_others():
    module = fm.mtl.hard_sharing_mlp(4, (8,), TASKS)
    params, buffers = fm.init(module, fm.random.key(0))
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "mean")
    step = fm.mtl.make_step(fm.mtl.split_module(module), TASKS, opt, "mean")
    _, targets = batch(labelled_a=False)
    new, metrics = step(state, (torch.randn(6, 4), targets), fm.random.key(1))
    assert math.isnan(metrics["a/accuracy"]) and math.isnan(metrics["b/mse"])
    assert not math.isnan(metrics["c/accuracy"]) and torch.isfinite(metrics["loss"])
    assert metrics["losses"][0] == 0 and metrics["losses"][1] == 0
    for name in params:  # unlabelled tasks' heads get no gradient
        if name.startswith(("tasks.heads.a.", "tasks.heads.b.")):
            assert torch.equal(new.params[name], params[name])


def test_fit_averages_metrics_over_the_batches_that_measured_them():
    values = iter([1.0, NAN, 3.0, NAN, NAN, NAN])  # two epochs of three batches

    def step(state, batch, key):
        del batch, key
        value = torch.tensor(next(values))
        return state._replace(step=state.step + 1), {"loss": torch.tensor(0.5), "a/mse": value}

    state = fm.train.init_state({"w": torch.zeros(1)}, {}, fm.optim.sgd(0.1))
    result = fm.train.fit(step, state, torch.zeros(6, 1), key=fm.random.key(0), batch_size=2,
                          epochs=2)
    assert result.history[0]["train_a/mse"] == 2.0  # mean of 1 and 3; the NaN batch skipped
    assert math.isnan(result.history[1]["train_a/mse"])  # never measured in epoch 1
    assert result.history[0]["train_loss"] == 0.5


def test_float64_regression_targets_keep_the_step_in_the_model_dtype():
    tasks = [Task("b", "regression", 1), Task("c", "binary", 1)]
    module = fm.mtl.hard_sharing_mlp(4, (8,), tasks)
    params, buffers = fm.init(module, fm.random.key(0))
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, tasks, opt, "mean")
    step = fm.mtl.make_step(fm.mtl.split_module(module), tasks, opt, "mean")
    targets = {"b": torch.randn(6, dtype=torch.float64), "c": torch.ones(6, dtype=torch.float64)}
    new, metrics = step(state, (torch.randn(6, 4), targets), fm.random.key(1))
    assert metrics["losses"].dtype == torch.float32 and metrics["b/mse"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in new.params.values())
