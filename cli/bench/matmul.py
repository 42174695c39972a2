"""``funcmtl bench matmul``: the device's float32 matmul rate, the roofline for the others."""

from __future__ import annotations

import dataclasses

from ._timing import matmul_gflops, resolve_device


@dataclasses.dataclass(frozen=True)
class MatmulBench:
    """Measure the device's float32 matmul rate (GFLOP/s) at a few square sizes."""

    sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    """Square matrix sizes to time."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""


def run(config: MatmulBench) -> int:
    device = resolve_device(config.device)
    for size in config.sizes:
        if size < 1:
            raise ValueError(f"`--sizes` must be positive; got {size}.")
        print(f"{size:>6} x {size:<6} {matmul_gflops(device, size):8.1f} GFLOP/s")
    return 0
