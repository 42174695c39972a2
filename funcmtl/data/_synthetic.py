"""Generated 2-D classification data sets: pure functions of a key returning ``(x, y)``."""

from __future__ import annotations

import math

import torch

from funcmtl import random


def spirals(
    key: torch.Tensor, n: int, arms: int = 3, noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on ``arms`` noisy interleaved spirals.

    Point ``i`` belongs to arm ``i mod arms`` (so the classes are balanced), at a radius
    uniform in ``[0.05, 1)`` and angle ``3.5 · radius + 2π · arm / arms``, plus Gaussian noise
    of standard deviation ``noise`` on each coordinate.

    Args:
        key: the random key; the same key gives the same points.
        n: number of points.
        arms: number of spiral arms, one class each.
        noise: standard deviation of the noise (class overlap).

    Returns:
        Inputs ``(n, 2)`` float32 and labels ``(n,)`` int64 in ``[0, arms)``.

    Example:
        >>> x, y = fm.data.spirals(fm.random.key(0), 300)   # (300, 2), (300,)
    """
    k_radius, k_noise = random.split(key)
    labels = torch.arange(n) % arms
    radius = random.uniform(k_radius, (n,), low=0.05, high=1.0)
    angle = 3.5 * radius + labels * (2 * math.pi / arms)
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return points + noise * random.normal(k_noise, (n, 2)), labels


def blobs(
    key: torch.Tensor, n: int, classes: int = 3, spread: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from ``classes`` Gaussian blobs whose centres lie on a circle.

    Each label is drawn uniformly from ``[0, classes)``; neighbouring centres are one unit
    apart, and each point is its centre plus Gaussian noise of standard deviation ``spread``.

    Args:
        key: the random key; the same key gives the same points.
        n: number of points.
        classes: number of blobs, one class each.
        spread: standard deviation of each blob (class overlap).

    Returns:
        Inputs ``(n, 2)`` float32 and labels ``(n,)`` int64 in ``[0, classes)``.

    Example:
        >>> x, y = fm.data.blobs(fm.random.key(0), 300, classes=5)   # (300, 2), (300,)
    """
    k_label, k_noise = random.split(key)
    labels = random.randint(k_label, (n,), 0, classes)
    # Centres on a circle with neighbours one unit apart.
    radius = 0.5 / math.sin(math.pi / classes)
    angle = labels * (2 * math.pi / classes)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + spread * random.normal(k_noise, (n, 2)), labels
