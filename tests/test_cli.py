"""The command line: subcommands parse with tyro, bad input exits 2 with one clear line."""

import subprocess
import sys

import pytest

import funcmtl as fm
from cli.main import main


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


def test_methods_group_filter(capsys):
    assert main(["methods", "--group", "schedules"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("schedules:") and "adam " not in out and "scale_by_schedule" not in out


def test_unknown_group_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "--group", "bogus"])
    assert exit_info.value.code == 2


def test_console_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "methods" in result.stdout
