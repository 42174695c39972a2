"""End-to-end: ``funcmtl train / eval / compare / ensemble`` through ``cli.main.main``."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from funcmtl import checkpoint, experiment, tree
from funcmtl.experiment import _evaluate, _io, _state
from funcmtl_cli.main import main

# Small and fast: multidigits with a narrow trunk, a few dozen steps.
FAST = ["--hidden", "32", "--batch-size", "64", "--log-every", "5", "--data-options",
        "num_pairs=(600,200,200)"]


def _files(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _load_tree(path: Path, config: experiment.TrainConfig):
    splits = experiment.load_splits(config)
    setup = experiment.build(config, splits, _state.total_steps(config, len(splits.train)))
    like = _state.initial_tree(config, setup, torch.device("cpu"))
    return checkpoint.load(path, like)[0]


def test_train_then_eval_reports_the_saved_models_metrics(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", *FAST, "--steps", "40", "--method", "pcgrad", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for task in ("left", "right", "sum"):
        assert task in printed
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"} <= set(
        _files(out)
    )
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(5, 45, 5))
    assert all("conflict" in r for r in records if r["split"] == "train")
    # eval recomputes the test metrics from the checkpoint: the same numbers as the summary.
    config, state = experiment.load_run(out)
    splits = experiment.load_splits(config)
    setup = experiment.build(config, splits, 40)
    scores = _evaluate.evaluate(
        _io.apply_of(setup), state.params, state.buffers, splits.test, "cpu"
    )
    assert float(scores["left/accuracy"][0]) == pytest.approx(
        summary["test"]["left"]["accuracy"]["mean"], abs=1e-7
    )
    assert main(["eval", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert f"{summary['test']['left']['accuracy']['mean']:.4f}" in table


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, ctrl_c_at) -> None:
    args = [*FAST, "--steps", "30", "--method", "pcgrad", "--dropout", "0.2",
            "--members", "2", "--checkpoint-every", "7", "--eval-every", "10"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", *args, "--out", str(whole)]) == 0
    with ctrl_c_at(17):
        assert main(["train", *args, "--out", str(parts)]) == 130  # Ctrl-C: saved, clean exit
    _, meta = checkpoint.load(parts / "checkpoint.pt", _state.initial_tree(*_setup_for(parts)))
    assert meta["step"] == 17
    assert main(["train", *args, "--out", str(parts), "--resume"]) == 0

    config = experiment.load_run(whole)[0]
    a = _load_tree(whole / "checkpoint.pt", config)
    b = _load_tree(parts / "checkpoint.pt", config)
    leaves_a, leaves_b = tree.leaves(a), tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)
    assert (whole / "metrics.jsonl").read_text() == (parts / "metrics.jsonl").read_text()
    assert (whole / "summary.json").read_text() == (parts / "summary.json").read_text()


def _setup_for(out: Path):
    config = experiment.load_run(out)[0]
    splits = experiment.load_splits(config)
    setup = experiment.build(config, splits, _state.total_steps(config, len(splits.train)))
    return config, setup, torch.device("cpu")


def test_compare_two_methods_two_seeds(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", *FAST, "--steps", "20", "--methods", "mean", "mgda",
                 "--seeds", "2", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "compare.json").read_text())
    assert set(data["methods"]) == {"mean", "mgda"}
    for result in data["methods"].values():
        members = result["test"]["left"]["accuracy"]["members"]
        losses = result["test"]["left"]["loss"]["members"]
        assert len(members) == 2 and losses[0] != losses[1]  # two seeds, two models
        mean = sum(members) / 2
        assert result["test"]["left"]["accuracy"]["mean"] == pytest.approx(mean)
        assert isinstance(result["delta_m_percent"], float)
    markdown = (out / "compare.md").read_text().splitlines()
    rows = [line for line in markdown if line.startswith("| mgda ")]
    assert len(rows) == 1 and rows[0].endswith("|") and rows[0].count("|") == 6
    header = next(i for i, line in enumerate(markdown) if line.startswith("| method "))
    assert markdown[header + 1].startswith("|--")  # the header's rule: a Markdown table
    assert "Δm%" in capsys.readouterr().out


def test_ensemble_reports_ensemble_and_member_metrics(tmp_path, capsys) -> None:
    assert main(["ensemble", *FAST, "--steps", "20", "--members", "3"]) == 0
    printed = capsys.readouterr().out
    assert "members (mean ± std)" in printed and "mutual_information" in printed


def _write_csv(path: Path, rows: list[list]) -> None:
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)


@pytest.fixture
def table_csv(tmp_path) -> Path:
    path = tmp_path / "data.csv"
    rows = [["a", "b", "label", "value"]]
    rows += [[i * 0.1, (i % 3) * 1.0, i % 2, i * 0.5] for i in range(40)]
    _write_csv(path, rows)
    return path


BAD_INPUTS = {
    "unknown dataset": (["--data", "nosuchdata"], "nosuchdata"),
    "unknown method": (["--method", "nosuchmethod"], "nosuchmethod"),
    "non-positive lr": (["--lr", "0"], "--lr"),
    "negative lr": (["--lr", "-1e-3"], "--lr"),
    "unknown preset": (["--preset", "nosuchpreset"], "nosuchpreset"),
    "bad method option": (["--method", "cagrad", "--method-options", "nosuch=1"], "nosuch"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys) -> None:
    flags, needle = BAD_INPUTS[case]
    assert main(["train", *FAST, "--steps", "2", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("funcmtl: error:") and needle in err and "\n" not in err


def _csv_case(tmp_path: Path, rows: list[list]) -> Path:
    path = tmp_path / "bad.csv"
    _write_csv(path, [["a", "b", "label"], *rows])
    return path


@pytest.mark.parametrize(
    "case, rows, targets, needle",
    [
        ("unknown column", [[0.1, 0.2, 1]] * 10, ["label=classification:nolabel"], "nolabel"),
        ("NaN in data", [[float("nan"), 0.2, 1]] + [[0.1, 0.2, 0]] * 9,
         ["label=classification"], "NaN"),
        ("label out of range", [[0.1, 0.2, -1]] + [[0.1, 0.2, 0]] * 9,
         ["label=classification"], "-1"),
    ],
)
def test_bad_files_exit_2(tmp_path, capsys, case, rows, targets, needle) -> None:
    path = _csv_case(tmp_path, rows)
    assert main(["train", "--data", str(path), "--targets", *targets, "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err, case


def test_mismatched_shapes_in_a_tensor_file_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "data.pt"
    torch.save({"x": torch.randn(10, 3), "label": torch.zeros(9, dtype=torch.int64)}, path)
    code = main(["train", "--data", str(path), "--inputs", "x",
                 "--targets", "label=classification(2)", "--steps", "2"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "10" in err and "9" in err and "\n" not in err


def test_user_csv_trains(table_csv, capsys) -> None:
    code = main(["train", "--data", str(table_csv), "--targets", "label=classification",
                 "value=regression", "--steps", "5", "--hidden", "8"])
    assert code == 0
    assert "label" in capsys.readouterr().out


def test_out_holding_another_run_is_left_untouched(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *FAST, "--steps", "5", "--out", str(out)]) == 0
    before = _files(out)
    for flags in (["--steps", "5"], ["--steps", "5", "--method", "mgda", "--resume"]):
        assert main(["train", *FAST, *flags, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--resume" in err or "method" in err
        assert _files(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["train", *FAST, "--steps", "5", "--out", str(other)]) == 2
    assert _files(other) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_non_finite_loss_is_reported_or_skipped(tmp_path, capsys) -> None:
    diverge = ["--data", "synthetic", "--data-options", "num_examples=400", "--optimizer",
               "sgd", "--lr", "1e6", "--momentum", "0.0", "--steps", "20", "--hidden", "16"]
    assert main(["train", *diverge]) == 2
    assert "non-finite loss" in capsys.readouterr().err
    assert main(["train", *diverge, "--skip-nonfinite"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_toy_trajectories_are_written_and_descend(tmp_path, capsys) -> None:
    out = tmp_path / "toy.json"
    assert main(["toy", "--methods", "mean", "mgda", "--steps", "40", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["compiled"] is False  # 'auto' compiles from 5000 steps
    for runs in data["runs"].values():
        assert len(runs) == 3  # CAGrad's three starting points
        for run in runs:
            losses = torch.tensor(run["losses"], dtype=torch.float64)
            assert losses.shape == (41, 2)
            assert losses[-1].sum() < losses[0].sum()  # the mean of the losses went down
    assert "loss 1" in capsys.readouterr().out


def test_plot_takes_the_run_directory(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", *FAST, "--steps", "10", "--out", str(out)]) == 0
    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
