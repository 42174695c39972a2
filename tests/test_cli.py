"""The command line: subcommands parse with tyro, bad input exits 2 with one clear line."""

import json
import subprocess
import sys

import pytest
import torch

import funcmtl as fm
from funcmtl_cli.main import main


def test_methods_lists_every_public_optimizer_loss_and_metric(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("sgd", "adam", "adamw", "rmsprop", "clip_by_global_norm", "partition",
                 "cosine_decay_schedule", "cross_entropy", "f1", "ece"):
        assert f"  {name} " in out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    public = {n for m in (fm.optim, fm.losses, fm.metrics) for n in m.__all__
              if callable(getattr(m, n)) and not isinstance(getattr(m, n), type)}
    assert public - listed <= {"Schedule", "ScalarOrSchedule"}


def _listed(out: str) -> dict[str, dict[str, str]]:
    """``funcmtl methods`` output as group -> name -> the rest of its line."""
    listed: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        if line.startswith("  "):
            name, rest = line.split(maxsplit=1)
            listed[next(reversed(listed))][name] = rest
        else:
            listed[line.removesuffix(":")] = {}
    return listed


def test_methods_lists_every_aggregator_and_weighting_with_its_reference(capsys):
    assert main(["methods"]) == 0
    listed = _listed(capsys.readouterr().out)
    for group, registry in (("aggregators", fm.aggregators), ("weightings", fm.weightings)):
        assert list(listed[group]) == registry.names()
        for name in registry.names():
            method = registry.method(name)
            assert listed[group][name] == f"{method.summary} [{method.reference}]"


def test_methods_group_filter(capsys):
    assert main(["methods", "--group", "schedules"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("schedules:") and "adam " not in out and "scale_by_schedule" not in out
    assert main(["methods", "--group", "weightings"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("weightings:") and "  gradnorm " in out and "  pcgrad " not in out


def test_unknown_group_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "--group", "bogus"])
    assert exit_info.value.code == 2


def test_console_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "funcmtl_cli.main", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "methods" in result.stdout


def test_bench_ensemble_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "ensemble", "--members", "2", "--widths", "8", "16", "3", "--batch", "4",
            "--rounds", "1", "--steps", "1", "--warmup", "0", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "ensemble" and result["device"] == "cpu"
    (row,) = result["rows"]
    assert row["members"] == 2
    for field in ("funcmtl_ms", "loop_ms", "bmm_ms", "speedup_vs_loop", "ratio_vs_bmm"):
        assert row[field] > 0
    assert row["speedup_vs_loop"] == pytest.approx(row["loop_ms"] / row["funcmtl_ms"], rel=1e-2)
    assert "funcmtl ms" in capsys.readouterr().out


def test_bench_on_a_missing_gpu_exits_2_with_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["bench", "matmul", "--device", "cuda", "--sizes", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a CUDA GPU" in err


def test_bench_pertask_writes_rows_for_every_contender(tmp_path):
    out = tmp_path / "pertask.json"
    args = ["bench", "pertask", "--tasks", "3", "--widths", "6", "8", "--batch", "5",
            "--rounds", "1", "--steps", "1", "--warmup", "0", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "pertask"
    (row,) = result["rows"]
    assert row["tasks"] == 3
    expected = {"summed_ms", "loop_pcgrad_ms"} | {
        f"funcmtl_{path}_{agg}_ms"
        for path in ("exact", "gramian", "representation") for agg in ("pcgrad", "upgrad")
    }
    assert expected <= set(row) and all(row[name] > 0 for name in expected)


def test_bench_aggregators_times_every_contender_and_writes_json(tmp_path, capsys):
    out = tmp_path / "agg.json"
    args = ["bench", "aggregators", "--aggregators", "mgda", "graddrop", "--tasks", "3",
            "--params", "20", "--members", "2", "--rounds", "1", "--steps", "1", "--warmup", "0",
            "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "aggregators"
    mgda, graddrop = result["records"]
    assert (mgda["aggregator"], mgda["tasks"], mgda["params"]) == ("mgda", 3, 20)
    assert {"eager", "weights", "vmap", "loop"} <= set(mgda["ms"])
    assert "weights" not in graddrop["ms"]  # GradDrop is not a weighting of the Gramian
    assert all(ms > 0 for ms in mgda["ms"].values())
    assert "eager ms" in capsys.readouterr().out
    assert main([*args[:3], "pcgard"]) == 2
