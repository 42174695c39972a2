"""An update that blows the weights up is refused (or skipped), never kept or checkpointed."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from _ranks import load_checkpoint

from funcmtl import experiment, mtl, tree
from funcmtl_cli.main import main

SMALL = ["--hidden", "8", "--batch-size", "16", "--data-options", "num_pairs=(100,50,50)"]
CONFIG = experiment.TrainConfig(hidden=(8,), batch_size=16, steps=10, checkpoint_every=3,
                                log_every=5, data_options=("num_pairs=(100,50,50)",))


def _blow_up(monkeypatch, update: int, factor: float) -> None:
    """The ``update``-th call of the step (and only it) multiplies the new parameters by
    ``factor`` (1e30: finite but useless; inf)."""
    original = mtl.make_step

    def make_step(*args, **kwargs):
        step, calls = original(*args, **kwargs), [0]

        def blown(state, batch, key):
            new, metrics = step(state, batch, key)
            calls[0] += 1
            if calls[0] != update:
                return new, metrics
            params = {n: p * factor for n, p in new.params.items()}
            return new._replace(params=params), metrics

        return blown

    monkeypatch.setattr(mtl, "make_step", make_step)


def _finite_and_sane(params) -> bool:
    return all(bool(torch.isfinite(p).all()) and float(p.abs().max()) < 1e6
               for p in tree.leaves(params))


def test_a_huge_learning_rate_is_skipped_at_every_step_leaving_a_usable_model(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--steps", "20", "--lr", "1e30", "--skip-nonfinite",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_steps"] == 20  # every update blew the weights up
    for task, metrics in summary["test"].items():
        assert math.isfinite(metrics["loss"]["mean"]), task
    initial, state, _ = load_checkpoint(out)
    for x, y in zip(tree.leaves(state.state.params), tree.leaves(initial.state.params),
                    strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("factor", [1e30, math.inf])
def test_the_blown_up_update_is_skipped_and_training_goes_on(monkeypatch, factor):
    _blow_up(monkeypatch, update=6, factor=factor)
    result = experiment.train(dataclasses.replace(CONFIG, skip_nonfinite=True), progress=False)
    assert result.skipped_steps == 1 and result.steps == 10
    assert _finite_and_sane(result.state.params)
    assert all(bool(torch.isfinite(v).all()) for v in result.test.values())


@pytest.mark.parametrize("factor, update", [(1e30, 6), (math.inf, 5)])
def test_without_the_flag_the_run_stops_and_the_last_checkpoint_is_sane(
    tmp_path, monkeypatch, factor, update
):
    _blow_up(monkeypatch, update=update, factor=factor)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=rf"at step {update} .*checkpoint in .* is intact"):
        experiment.train(dataclasses.replace(CONFIG, out=out), progress=False)
    _, state, meta = load_checkpoint(out)
    assert meta["step"] == 3  # the checkpoint of step 6 would have held the blown-up update
    assert _finite_and_sane(state.state.params)


def test_a_resumed_run_keeps_counting_its_skipped_steps(tmp_path, ctrl_c_at):
    args = [*SMALL, "--steps", "12", "--lr", "1e30", "--skip-nonfinite", "--checkpoint-every", "4"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", *args, "--out", str(whole)]) == 0
    with ctrl_c_at(6):
        assert main(["train", *args, "--out", str(parts)]) == 130
    assert main(["train", *args, "--out", str(parts), "--resume"]) == 0
    summaries = [json.loads((out / "summary.json").read_text()) for out in (whole, parts)]
    assert summaries[0]["skipped_steps"] == 12
    assert summaries[0] == summaries[1]
