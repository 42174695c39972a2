"""``funcmtl bench ensemble``: one training step of K MLPs, three ways, in one process.

Contenders (same data, same architecture, Adam, cross-entropy):
  funcmtl  ``fm.ensemble.make_step(..., donate=True)`` on stacked states;
  loop     K ``nn.Module`` with K ``torch.optim.Adam(foreach=True)``, one after another;
  bmm      one hand-batched ``torch.baddbmm`` network with one ``torch.optim.Adam``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import funcmtl as fm

from ._timing import (
    interleaved_medians,
    matmul_gflops,
    resolve_device,
    write_json_atomically,
)


@dataclasses.dataclass(frozen=True)
class EnsembleBench:
    """Time one training step of a K-member MLP ensemble: funcmtl vs a loop vs baddbmm."""

    members: tuple[int, ...] = (1, 8, 32, 128)
    """Ensemble sizes K to time."""
    widths: tuple[int, ...] = (64, 256, 256, 10)
    """MLP layer widths: input, hidden..., classes."""
    batch: int = 128
    """Examples per step (shared by all members)."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    rounds: int = 7
    """Interleaved timing rounds; the median is reported."""
    steps: int = 5
    """Steps per contender per round."""
    warmup: int = 3
    """Untimed steps per contender before timing."""
    json: Path | None = None
    """Also write the results here as JSON."""


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


def _funcmtl_step(net, members, x, y, device) -> Callable[[], object]:
    apply, _, _ = fm.functional(net)
    opt = fm.optim.adam(1e-3)
    params, buffers = fm.ensemble.init_members(net, fm.random.key(0), members, device=device)
    states = [fm.ensemble.init_states(params, buffers, opt)]
    step = fm.ensemble.make_step(
        fm.train.supervised_loss(apply, fm.losses.cross_entropy), opt, donate=True
    )
    keys = fm.random.split(fm.random.key(1), members).to(device)

    def run() -> None:
        states[0], _ = step(states[0], (x, y), keys)

    return run


def _loop_step(widths, members, x, y, device) -> Callable[[], object]:
    models = [_mlp(widths).to(device) for _ in range(members)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3, foreach=True) for m in models]

    def run() -> None:
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    return run


def _bmm_step(widths, members, x, y, device) -> Callable[[], object]:
    weights = [
        (torch.randn(members, i, o, device=device) / i**0.5).requires_grad_()
        for i, o in zip(widths[:-1], widths[1:], strict=True)
    ]
    biases = [torch.zeros(members, 1, o, device=device, requires_grad=True) for o in widths[1:]]
    optimizer = torch.optim.Adam([*weights, *biases], lr=1e-3)
    batch = x.shape[0]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        h = x.expand(members, *x.shape)
        for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if index < len(weights) - 1:
                h = torch.relu(h)
        # Sum of the members' mean losses: each member gets its own mean-loss gradient.
        loss = nn.functional.cross_entropy(
            h.reshape(members * batch, -1), y.repeat(members), reduction="sum"
        ) / batch
        loss.backward()
        optimizer.step()

    return run


def _train_flops(widths: tuple[int, ...], batch: int, members: int) -> float:
    # Forward 2·B·in·out per layer, backward twice that (weights and inputs) except the
    # first layer, whose input needs no gradient.
    macs = [i * o for i, o in zip(widths[:-1], widths[1:], strict=True)]
    return 2.0 * batch * members * (3 * sum(macs) - macs[0])


def run(config: EnsembleBench) -> int:
    device = resolve_device(config.device)
    widths = config.widths
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ValueError(f"`--widths` must be at least two positive sizes; got {widths}.")
    torch.manual_seed(0)
    x = torch.randn(config.batch, widths[0], device=device)
    y = torch.randint(0, widths[-1], (config.batch,), device=device)
    net = _mlp(widths)
    peak = matmul_gflops(device)
    rows = []
    header = (
        f"{'K':>5} {'funcmtl ms':>11} {'loop ms':>9} {'bmm ms':>8} {'x loop':>7} "
        f"{'/bmm':>6} {'GFLOP/s':>8}"
    )
    print(f"ensemble step, MLP {'-'.join(map(str, widths))}, batch {config.batch}, Adam, "
          f"{device.type} ({torch.get_num_threads()} threads); matmul peak {peak:.0f} GFLOP/s")
    print(header)
    for members in config.members:
        times = interleaved_medians(
            {
                "funcmtl": _funcmtl_step(net, members, x, y, device),
                "loop": _loop_step(widths, members, x, y, device),
                "bmm": _bmm_step(widths, members, x, y, device),
            },
            device=device,
            warmup=config.warmup,
            rounds=config.rounds,
            steps=config.steps,
        )
        gflops = _train_flops(widths, config.batch, members) / (times["funcmtl"] * 1e-3) / 1e9
        row = {
            "members": members,
            "funcmtl_ms": round(times["funcmtl"], 3),
            "loop_ms": round(times["loop"], 3),
            "bmm_ms": round(times["bmm"], 3),
            "speedup_vs_loop": round(times["loop"] / times["funcmtl"], 3),
            "ratio_vs_bmm": round(times["funcmtl"] / times["bmm"], 3),
            "funcmtl_gflops": round(gflops, 1),
        }
        rows.append(row)
        print(
            f"{members:>5} {row['funcmtl_ms']:>11.2f} {row['loop_ms']:>9.2f} "
            f"{row['bmm_ms']:>8.2f} {row['speedup_vs_loop']:>7.2f} "
            f"{row['ratio_vs_bmm']:>6.2f} {gflops:>8.1f}",
            flush=True,
        )
    result = {
        "suite": "ensemble",
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "matmul_gflops": round(peak, 1),
        "config": {"widths": list(widths), "batch": config.batch, "optimizer": "adam"},
        "rows": rows,
    }
    if config.json is not None:
        write_json_atomically(config.json, result)
    return 0

