"""Δm% and the member means of a metrics record, against tables computed by hand."""

import math

import pytest
import torch

import funcmtl as fm
from funcmtl.experiment._evaluate import record
from funcmtl.experiment._report import delta_m

TASKS = [
    fm.mtl.Task("digit", "classification", 10),
    fm.mtl.Task("price", "regression"),
]


def _entry(value: float) -> dict:
    return {"mean": value, "std": 0.0, "members": [value]}


def test_delta_m_matches_a_hand_computed_table():
    # digit accuracy 0.90 vs 0.80 (higher is better): -(0.90 - 0.80) / 0.80 = -0.125
    # price MSE 0.30 vs 0.20 (lower is better): +(0.30 - 0.20) / 0.20 = +0.5
    # Δm% = 100 * (-0.125 + 0.5) / 2 = 18.75
    results = {"digit": {"accuracy": _entry(0.90)}, "price": {"mse": _entry(0.30)}}
    baselines = {"digit": {"accuracy": _entry(0.80)}, "price": {"mse": _entry(0.20)}}
    assert delta_m(TASKS, results, baselines) == pytest.approx(18.75, abs=1e-12)
    # Swapped roles: digit +0.1111..., price -0.3333... -> 100 * (-0.2222...) / 2
    assert delta_m(TASKS, baselines, results) == pytest.approx(-100 * (2 / 9) / 2, abs=1e-12)


def test_delta_m_leaves_out_a_task_without_labels():
    results = {"digit": {"accuracy": _entry(0.90)}, "price": {"mse": _entry(math.nan)}}
    baselines = {"digit": {"accuracy": _entry(0.80)}, "price": {"mse": _entry(0.20)}}
    assert delta_m(TASKS, results, baselines) == pytest.approx(-12.5, abs=1e-12)
    nothing = {"digit": {"accuracy": _entry(math.nan)}, "price": {"mse": _entry(math.nan)}}
    assert math.isnan(delta_m(TASKS, nothing, baselines))


def test_record_averages_a_task_metric_over_the_members_that_saw_labels():
    values = {
        "loss": torch.tensor([1.0, 3.0]),
        "digit/accuracy": torch.tensor([0.5, math.nan]),
        "price/mse": torch.tensor([math.nan, math.nan]),
    }
    line = record(7, "val", values, TASKS)
    assert line["loss"] == 2.0
    assert line["tasks"]["digit"]["accuracy"] == 0.5
    assert math.isnan(line["tasks"]["price"]["mse"])
