"""Timing helpers shared by the benchmarks: interleaved rounds, medians, a matmul roofline.

Machines are noisy, so contenders are timed in interleaved rounds (A, B, C, A, B, C, ...)
within one process, and each reports the median over rounds of its mean step time.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    contenders: dict[str, Callable[[], object]],
    *,
    device: torch.device,
    warmup: int,
    rounds: int,
    steps: int,
) -> dict[str, float]:
    """Median over ``rounds`` of each contender's mean milliseconds per call.

    Each round runs every contender ``steps`` times back to back, after ``warmup`` untimed
    calls each (which also let lazy initialisation and allocator caches settle).
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) * 1e3 / steps)
    return {name: statistics.median(values) for name, values in samples.items()}


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """The device's measured float32 rate on one large square matmul, in GFLOP/s."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    ms = interleaved_medians(
        {"mm": lambda: a @ b}, device=device, warmup=2, rounds=repeats, steps=1
    )["mm"]
    return 2 * size**3 / (ms * 1e-3) / 1e9


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; a clear error when CUDA is asked for but absent."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"`--device` must be 'cpu' or 'cuda'; got {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` needs a CUDA GPU; torch.cuda.is_available() is False.")
    return torch.device(name)


def write_json_atomically(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON via a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)
