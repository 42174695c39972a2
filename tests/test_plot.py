"""cli.plot: a run's metrics.jsonl becomes one PNG of losses, metrics and conflict."""

from __future__ import annotations

import math
import sys

import pytest
import tyro

from funcmtl.rundir import RunDir
from funcmtl_cli import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(path, *, members=(None,)):
    with RunDir.open(path, {"lr": 0.1}, resume=False) as run:
        for step in range(0, 50, 5):
            for member in members:
                loss = 2.0 * math.exp(-step / 20) + (member or 0) * 0.1
                train = {
                    "step": step,
                    "split": "train",
                    "loss": loss,
                    "tasks": {"age": {"loss": loss / 2}, "sex": {"loss": loss / 2}},
                    "conflict": {"min_cosine": -0.5 + step / 100, "negative_fraction": 0.4},
                }
                run.log(train if member is None else {**train, "member": member})
                if step % 10 == 0:
                    val = {
                        "step": step,
                        "split": "val",
                        "loss": loss * 1.1,
                        "tasks": {
                            "age": {"loss": loss * 0.6, "mae": 5 - step / 20},
                            "sex": {"loss": loss * 0.5, "accuracy": 0.5 + step / 100},
                        },
                    }
                    run.log(val if member is None else {**val, "member": member})
        run.log({"step": 45, "split": "test", "loss": 0.3, "tasks": {"age": {"loss": math.nan}}})
    return path


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run_dir = make_run(tmp_path / "run")
    config = tyro.cli(plot.Plot, args=[str(run_dir)])
    assert plot.run(config) == 0
    out = run_dir / "curves.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")) == []


def test_plot_to_a_chosen_path_averages_members(tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = make_run(tmp_path / "run", members=(0, 1, 2))
    series = plot.curves(RunDir.existing(run_dir).records())
    assert series[("train", "age", "loss")][0] == (0, pytest.approx((1.0 + 1.05 + 1.1) / 3))
    assert series[("val", "sex", "accuracy")][-1] == (40, pytest.approx(0.9))
    assert math.isnan(series[("test", "age", "loss")][0][1])
    out = tmp_path / "figure.png"
    assert plot.run(plot.Plot(run=run_dir, out=out)) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="run directory .* does not exist"):
        plot.run(plot.Plot(run=tmp_path / "missing"))
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="holds no funcmtl run"):
        plot.run(plot.Plot(run=tmp_path / "other"))
    RunDir.open(tmp_path / "fresh", {"lr": 0.1}, resume=False).close()
    with pytest.raises(ValueError, match="holds no records"):
        plot.run(plot.Plot(run=tmp_path / "fresh"))
    run_dir = make_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ValueError, match=r"pip install 'funcmtl\[plot\]'"):
        plot.run(plot.Plot(run=run_dir))
    assert not (run_dir / "curves.png").exists()
