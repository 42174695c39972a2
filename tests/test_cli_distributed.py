"""``torchrun --nproc-per-node 2`` over the CLI: the same results as one process (gloo, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ranks import ROOT, base_env, funcmtl_argv, load_checkpoint

from funcmtl import tree
from funcmtl_cli.main import main

FAST = ["--hidden", "16", "--batch-size", "50", "--steps", "12", "--log-every", "4",
        "--data-options", "num_pairs=(300,100,100)"]


def _torchrun(args: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS``; never leaves processes.

    ``--standalone`` binds its rendezvous store to a port the kernel picks (no free-port
    race). The bound is generous for a loaded machine; a run still going at it is a hang: the
    workers get SIGABRT, so that faulthandler prints their stacks into the failure message.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "--no-python", *funcmtl_argv(args)]
    process = subprocess.Popen(command, cwd=ROOT, env=base_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)  # the workers dump their stacks
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s:\n{err[-6000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _final_tree(out: Path):
    return load_checkpoint(out)[1:]


def _assert_trees_close(a, b, atol: float) -> None:
    leaves_a, leaves_b = tree.leaves(a), tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


@pytest.mark.parametrize(
    "command, flags",
    [
        # 5 members sharded 3 + 2 over the ranks; dropout draws keys per global member.
        ("ensemble", ["--members", "5", "--dropout", "0.1", "--method", "pcgrad"]),
        # One member per rank: a vmap over one member must compute what a vmap over two does.
        ("ensemble", ["--members", "2"]),
        # One model, data-parallel: the per-task Jacobian is all-reduced before PCGrad.
        ("train", ["--members", "1", "--method", "pcgrad"]),
    ],
)
def test_two_ranks_equal_one_process(tmp_path, command, flags) -> None:
    single, sharded = tmp_path / "single", tmp_path / "two"
    assert main([command, *FAST, *flags, "--out", str(single)]) == 0
    result = _torchrun([command, *FAST, *flags, "--out", str(sharded)])
    assert result.returncode == 0, result.stderr[-2000:]
    (tree_1, meta_1), (tree_2, meta_2) = _final_tree(single), _final_tree(sharded)
    assert meta_1["step"] == meta_2["step"] == 12
    # Sharded members are bit-identical; data-parallel sums the batch in another order.
    _assert_trees_close(tree_1, tree_2, atol=0 if command == "ensemble" else 1e-5)
    records_1 = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    records_2 = [json.loads(x) for x in (sharded / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records_1] == [r["step"] for r in records_2]
    for r1, r2 in zip(records_1, records_2, strict=True):
        assert r1["loss"] == pytest.approx(r2["loss"], abs=1e-5)
    if command == "ensemble":  # rank 0 printed the same ensemble table
        assert "members (mean ± std)" in result.stdout


def test_bad_input_fails_fast_on_every_rank(tmp_path) -> None:
    result = _torchrun(["ensemble", *FAST, "--members", "4", "--data", "nosuchdata"], 60)
    assert result.returncode != 0
    assert result.stderr.count("funcmtl: error:") == 2 and "nosuchdata" in result.stderr
