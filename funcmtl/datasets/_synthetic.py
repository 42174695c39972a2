"""The MMoE synthetic regression tasks with a controlled task correlation (Ma et al., 2018).

Ma et al. (section 3.2) build two regression tasks whose relatedness is one number, the cosine
``p`` between their weight vectors:

1. orthonormal ``u_1, u_2 ∈ R^d``;
2. ``w_1 = c u_1``, ``w_2 = c (p u_1 + √(1 − p²) u_2)``, so ``cos(w_1, w_2) = p``;
3. ``x ∈ R^d`` with entries from ``N(0, 1)``;
4. ``y_t = w_tᵀx + Σ_{i=1..m} sin(α_i w_tᵀx + β_i) + ε_t``, ``ε_t ~ N(0, 0.01)``.

The label Pearson correlation grows with ``p`` (their Figure 2).

What the paper fixes, and what this module chooses where it does not:

- ``d = 100`` (section 5.1, "The input dimension is 100"): the default ``num_features``.
- ``ε_t ~ N(0, 0.01)`` (section 3.2), read as a variance in the usual ``N(μ, σ²)`` notation:
  ``noise_std = 0.1``.
- ``c``, ``m``, ``α_i``, ``β_i`` are "given parameters" the paper never states. Defaults:
  ``c = 1`` (unit-norm weights, so ``w_tᵀx ~ N(0, 1)``), ``m = 10`` and ``α_i, β_i ~ N(0, 1)``
  drawn once per dataset from the seed and shared by all tasks (as in section 3.2, where one
  set of ``α_i, β_i`` serves both tasks). The same choices appear in public re-implementations
  of the generator; they are not the paper's.
- The number of examples: the paper only says "repeat (3) and (4) until enough data are
  generated", draws new data for each of its 200 runs, and plots the loss against training
  steps (Figures 3 and 4), so its comparison is not limited by data. Its "10k data points" are
  the sample it measures the label correlation on (Figure 2), not a training-set size. The
  default here is ``num_examples = 200_000`` (160k training examples after the usual
  80/10/10 split): with 10k examples the parameter-matched models of section 5.1 (about 13k
  parameters) overfit so much that their test error no longer reflects the task relatedness
  the experiment studies (the ``synthetic-shared`` model, 80 epochs of Adam at lr 3e-3, seed
  0: training MSE 0.03 against test MSE 0.14 at ``p = 0``, and 0.13 against 0.59 at
  ``p = 1``). 200k is a cost compromise, not the paper's (unstated) size: generating it takes
  about 10 s on one CPU thread, and the presets' 3000 steps of 256 examples go about 5 times
  over the training split.

How hard the tasks are depends much on the ``α_i, β_i`` of the seed: at seed 0 the target is
nearly free of a linear trend (a least-squares line leaves 95% of its variance), at seed 1 it
is mostly linear (24% left), and the presets' models reach the noise floor on seed 1 at both
``p = 0`` and ``p = 1``. Like the paper's 200 runs, conclusions need several seeds.

**T tasks.** Every pair of weight vectors gets cosine ``p``: with ``C = (1 − p) I + p 11ᵀ``
(the ``T × T`` equicorrelation matrix) and ``L`` its Cholesky factor, ``w_t = c Σ_j L_tj u_j``
over ``T`` orthonormal ``u_j``, so ``W Wᵀ = c² C``. For ``T = 2``, ``L = [[1, 0],
[p, √(1 − p²)]]`` gives exactly the paper's ``w_1, w_2``. ``C`` is positive semi-definite for
``−1/(T − 1) ≤ p ≤ 1``.

References:
    Ma, Zhao, Yi, Chen, Hong & Chi, `Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts <https://doi.org/10.1145/3219819.3220007>`_, KDD 2018.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from funcmtl import random
from funcmtl.datasets._dataset import MultiTaskDataset
from funcmtl.mtl import Task


class SyntheticParams(NamedTuple):
    """The fixed part of the generator, all float64."""

    weights: Tensor  # shape=(tasks, features): w_t, norm c, pairwise cosine p
    alphas: Tensor  # shape=(m,): frequencies α_i
    betas: Tensor  # shape=(m,): phases β_i


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return value


def _equicorrelation_cholesky(num_tasks: int, correlation: float) -> Tensor:
    """Lower-triangular ``L`` with ``L Lᵀ = (1 − p) I + p 11ᵀ`` (float64).

    Written out rather than ``torch.linalg.cholesky`` so that the singular ends ``p = 1`` and
    ``p = −1/(T − 1)`` work too (a pivot of 0 is clamped, not rejected).
    """
    gram = torch.full((num_tasks, num_tasks), correlation, dtype=torch.float64)
    gram.fill_diagonal_(1.0)
    factor = torch.zeros_like(gram)
    for i in range(num_tasks):
        for j in range(i + 1):
            partial = gram[i, j] - factor[i, :j] @ factor[j, :j]
            if i == j:
                factor[i, i] = partial.clamp(min=0.0).sqrt()
            else:
                pivot = factor[j, j]
                factor[i, j] = partial / pivot if pivot > 1e-12 else 0.0
    return factor


def synthetic_params(
    num_tasks: int = 2,
    correlation: float = 0.5,
    num_features: int = 100,
    seed: int = 0,
    *,
    scale: float = 1.0,
    num_sinusoids: int = 10,
) -> SyntheticParams:
    """The weight vectors and sinusoid parameters :func:`synthetic` uses for these options.

    Datasets with the same seed share the basis ``u_j``, the ``α_i``, the ``β_i`` and the
    inputs whatever their correlation, so a sweep over ``correlation`` changes nothing else.
    """
    _positive_int("num_tasks", num_tasks)
    _positive_int("num_features", num_features)
    _positive_int("num_sinusoids", num_sinusoids)
    lowest = -1.0 / (num_tasks - 1) if num_tasks > 1 else -1.0
    if not isinstance(correlation, (int, float)) or not lowest <= correlation <= 1.0:
        raise ValueError(
            f"`correlation` must be a cosine in [{lowest:.4g}, 1] for {num_tasks} tasks "
            f"(every pair shares it); got {correlation!r}."
        )
    if num_features < num_tasks:
        raise ValueError(
            f"`num_features` must be at least `num_tasks` ({num_tasks}) to hold that many "
            f"orthogonal directions; got {num_features}."
        )
    k_basis, k_alpha, k_beta = random.split(random.fold_in(random.key(seed), 0), 3)
    gaussian = random.normal(k_basis, (num_features, num_tasks), dtype=torch.float64)
    basis = torch.linalg.qr(gaussian).Q.T  # (tasks, features), orthonormal rows u_j
    weights = scale * _equicorrelation_cholesky(num_tasks, float(correlation)) @ basis
    alphas = random.normal(k_alpha, (num_sinusoids,), dtype=torch.float64)
    betas = random.normal(k_beta, (num_sinusoids,), dtype=torch.float64)
    return SyntheticParams(weights, alphas, betas)


def synthetic_targets(params: SyntheticParams, inputs: Tensor) -> Tensor:
    """The noise-free targets ``w_tᵀx + Σ_i sin(α_i w_tᵀx + β_i)``, ``(N, tasks)`` float64."""
    projections = inputs.to(torch.float64) @ params.weights.T  # (N, tasks)
    waves = torch.sin(params.alphas * projections[..., None] + params.betas)  # (N, tasks, m)
    return projections + waves.sum(dim=-1)


def synthetic(
    num_tasks: int = 2,
    correlation: float = 0.5,
    num_examples: int = 200_000,
    num_features: int = 100,
    seed: int = 0,
    *,
    scale: float = 1.0,
    num_sinusoids: int = 10,
    noise_std: float = 0.1,
) -> MultiTaskDataset:
    """Regression tasks ``y1 .. yT`` whose weight vectors have pairwise cosine ``correlation``.

    See the module docstring for the generator (Ma et al., 2018, section 3.2) and the
    constants it leaves open.

    Args:
        num_tasks: ``T``, the number of regression tasks.
        correlation: the cosine ``p`` between every pair of weight vectors, in
            ``[−1/(T − 1), 1]``.
        num_examples: ``N`` (see the module docstring for the default).
        num_features: ``d`` (100 in the paper).
        seed: everything is a pure function of it.
        scale: ``c``, the norm of every weight vector (not given in the paper).
        num_sinusoids: ``m`` (not given in the paper).
        noise_std: standard deviation of ``ε_t`` (0.1: the paper's variance 0.01).

    Returns:
        A :class:`MultiTaskDataset` with ``inputs`` ``(N, d)`` from ``N(0, 1)`` and float32
        targets ``y1`` .. ``yT`` ``(N,)``.

    Example:
        >>> data = fm.datasets.synthetic(correlation=0.9, seed=3)
    """
    _positive_int("num_examples", num_examples)
    if not isinstance(noise_std, (int, float)) or not noise_std >= 0:
        raise ValueError(f"`noise_std` must be a number >= 0; got {noise_std!r}.")
    params = synthetic_params(
        num_tasks, correlation, num_features, seed, scale=scale, num_sinusoids=num_sinusoids
    )
    k_inputs, k_noise = random.split(random.fold_in(random.key(seed), 1))
    inputs = random.normal(k_inputs, (num_examples, num_features))
    noise = noise_std * random.normal(k_noise, (num_examples, num_tasks), dtype=torch.float64)
    labels = (synthetic_targets(params, inputs) + noise).to(torch.float32)
    names = [f"y{t + 1}" for t in range(num_tasks)]
    description = (
        f"MMoE synthetic regression (Ma et al., 2018): {num_tasks} tasks, weight cosine "
        f"{correlation}, {num_features} Gaussian features, {num_sinusoids} sinusoids."
    )
    return MultiTaskDataset(
        "synthetic",
        inputs,
        {name: labels[:, t].contiguous() for t, name in enumerate(names)},
        tuple(Task(name, "regression") for name in names),
        description,
    ).validate()
