"""``funcmtl bench pertask``: one multi-task update step with per-task gradients, in one process.

Model: a shared MLP trunk (128-512-512-512, ReLU) and T one-output heads, BCE, batch 256,
Adam. Every contender does the full step: per-task gradients, aggregation, optimizer.
  summed        the plain summed-loss backward (the floor: no per-task gradients at all);
  loop_pcgrad   T ``torch.autograd.grad`` passes + a plain PCGrad (what LibMTL does);
  torchjd_*     torchjd's ``mtl_backward`` + ``jac_to_grad`` (when torchjd is installed);
  funcmtl_*     ``fm.mtl.make_step`` on the exact / Gramian / representation paths.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import funcmtl as fm

from ._timing import interleaved_medians, resolve_device, write_json_atomically


@dataclasses.dataclass(frozen=True)
class PertaskBench:
    """Time one multi-task update step (per-task gradients + aggregation + Adam)."""

    tasks: tuple[int, ...] = (2, 8, 40)
    """Numbers of tasks T to time."""
    widths: tuple[int, ...] = (128, 512, 512, 512)
    """Shared trunk widths: input, hidden..., representation."""
    batch: int = 256
    """Examples per step."""
    aggregators: tuple[str, ...] = ("pcgrad", "upgrad")
    """funcmtl and torchjd aggregators to time."""
    paths: tuple[str, ...] = ("exact", "gramian", "representation")
    """funcmtl per-task gradient paths to time."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    rounds: int = 5
    """Interleaved timing rounds; the median is reported."""
    steps: int = 2
    """Steps per contender per round."""
    warmup: int = 2
    """Untimed steps per contender before timing."""
    json: Path | None = None
    """Also write the results here as JSON."""


def _trunk(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _torch_model(widths, num_tasks, device):
    trunk = _trunk(widths).to(device)
    heads = nn.ModuleList(nn.Linear(widths[-1], 1) for _ in range(num_tasks)).to(device)
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-3)
    return trunk, heads, optimizer


def _losses(trunk, heads, x, y) -> tuple[torch.Tensor, list[torch.Tensor]]:
    # Separate loss tensors (not one stacked vector): torchjd differentiates each on its own.
    z = trunk(x)
    return z, [
        nn.functional.binary_cross_entropy_with_logits(head(z).squeeze(-1), y[:, t])
        for t, head in enumerate(heads)
    ]


def _summed(widths, num_tasks, x, y, device) -> Callable[[], None]:
    trunk, heads, optimizer = _torch_model(widths, num_tasks, device)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        sum(_losses(trunk, heads, x, y)[1]).backward()
        optimizer.step()

    return run


def _plain_pcgrad(grads: torch.Tensor) -> torch.Tensor:
    """PCGrad as LibMTL writes it: a Python loop over tasks in a random order."""
    projected = grads.clone()
    for i in range(grads.shape[0]):
        for j in torch.randperm(grads.shape[0]).tolist():
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot * grads[j] / grads[j].square().sum()
    return projected.sum(0)


def _loop_pcgrad(widths, num_tasks, x, y, device) -> Callable[[], None]:
    trunk, heads, optimizer = _torch_model(widths, num_tasks, device)
    shared = list(trunk.parameters())

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, losses = _losses(trunk, heads, x, y)
        rows = []
        for t in range(num_tasks):
            grads = torch.autograd.grad(losses[t], shared, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        sum(losses).backward(inputs=list(heads.parameters()))
        direction = _plain_pcgrad(torch.stack(rows))
        offset = 0
        for p in shared:
            p.grad = direction[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        optimizer.step()

    return run


def _torchjd(widths, num_tasks, x, y, device, aggregator_name) -> Callable[[], None]:
    from torchjd import aggregation, autojac

    aggregator = {"pcgrad": aggregation.PCGrad, "upgrad": aggregation.UPGrad}[aggregator_name]()
    trunk, heads, optimizer = _torch_model(widths, num_tasks, device)
    shared = list(trunk.parameters())

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        z, losses = _losses(trunk, heads, x, y)
        autojac.mtl_backward(losses, features=z)
        autojac.jac_to_grad(shared, aggregator)
        optimizer.step()

    return run


def _funcmtl(widths, num_tasks, x, y, device, aggregator, path) -> Callable[[], None]:
    tasks = [fm.mtl.Task(f"t{t}", "binary", 1) for t in range(num_tasks)]
    heads = {t.name: fm.mtl.output_head(widths[-1], t) for t in tasks}
    module = fm.mtl.HardSharing(_trunk(widths), heads)
    params, buffers = fm.init(module, fm.random.key(0), device=device)
    opt = fm.optim.adam(1e-3)
    state = [fm.mtl.init_state(params, buffers, tasks, opt, aggregator)]
    step = fm.mtl.make_step(
        fm.mtl.split_module(module), tasks, opt, aggregator, path=path, donate=True
    )
    batch = (x, {t.name: y[:, i] for i, t in enumerate(tasks)})
    key = fm.random.key(1).to(device)

    def run() -> None:
        state[0], _ = step(state[0], batch, key)

    return run


def run(config: PertaskBench) -> int:
    device = resolve_device(config.device)
    have_torchjd = importlib.util.find_spec("torchjd") is not None
    torch.manual_seed(0)
    rows = []
    print(f"per-task step, trunk {'-'.join(map(str, config.widths))}, batch {config.batch}, "
          f"BCE, Adam, {device.type} ({torch.get_num_threads()} threads)"
          + ("" if have_torchjd else "; torchjd not installed"))
    for num_tasks in config.tasks:
        x = torch.randn(config.batch, config.widths[0], device=device)
        y = torch.randint(0, 2, (config.batch, num_tasks), device=device).float()
        contenders = {
            "summed": _summed(config.widths, num_tasks, x, y, device),
            "loop_pcgrad": _loop_pcgrad(config.widths, num_tasks, x, y, device),
        }
        for name in config.aggregators:
            if have_torchjd:
                contenders[f"torchjd_{name}"] = _torchjd(
                    config.widths, num_tasks, x, y, device, name
                )
            for path in config.paths:
                contenders[f"funcmtl_{path}_{name}"] = _funcmtl(
                    config.widths, num_tasks, x, y, device, name, path
                )
        times = interleaved_medians(
            contenders, device=device, warmup=config.warmup, rounds=config.rounds,
            steps=config.steps,
        )
        row = {"tasks": num_tasks, **{f"{n}_ms": round(t, 2) for n, t in times.items()}}
        rows.append(row)
        print(f"T={num_tasks}")
        for name, ms in times.items():
            print(f"  {name:<34} {ms:9.1f} ms   x{times['loop_pcgrad'] / ms:5.2f} vs loop")
    result = {
        "suite": "pertask",
        "device": device.type,
        "threads": torch.get_num_threads(),
        "torchjd": have_torchjd,
        "config": {"widths": list(config.widths), "batch": config.batch},
        "rows": rows,
    }
    if config.json is not None:
        write_json_atomically(config.json, result)
    return 0
