"""From a :class:`TrainConfig` to the pieces of a run: data, model, optimizer and method."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from funcmtl import aggregators, datasets, mtl, optim, weightings
from funcmtl.experiment._config import TrainConfig, option_texts, parse_options


@dataclasses.dataclass(frozen=True)
class Splits:
    """The train / validation / test parts of a dataset (``funcmtl.datasets``)."""

    train: datasets.MultiTaskDataset
    val: datasets.MultiTaskDataset
    test: datasets.MultiTaskDataset

    @property
    def tasks(self) -> tuple[mtl.Task, ...]:
        return self.train.tasks


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything a run needs besides its state."""

    module: nn.Module
    model: mtl.SplitModel
    tasks: tuple[mtl.Task, ...]
    optimizer: optim.GradientTransformation
    aggregator: aggregators.Aggregator
    weighting: weightings.Weighting
    regularizer: Callable[[dict[str, Tensor]], Tensor] | None


def load_splits(config: TrainConfig) -> Splits:
    """The dataset of ``--data`` split deterministically from ``--seed``."""
    options = parse_options(config.data_options, "--data-options")
    if config.inputs:
        options["inputs"] = list(config.inputs)
    if config.targets:
        options["targets"] = _target_specs(config.targets)
    train, val, test = datasets.load_splits(config.data, seed=config.seed, **options)
    return Splits(train, val, test)


def _target_specs(items: Sequence[str]) -> dict[str, str]:
    specs = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise ValueError(
                f"--targets items must be 'task=kind[:column,...]'; got {item!r}."
            )
        if name in specs:
            raise ValueError(
                f"--targets names task {name!r} twice ({name}={specs[name]} and {item}); "
                "give every task its own name."
            )
        specs[name] = spec
    return specs


def select_tasks(splits: Splits, names: Sequence[str]) -> Splits:
    """The same splits restricted to the tasks ``names`` (single-task baselines)."""

    def restrict(data: datasets.MultiTaskDataset) -> datasets.MultiTaskDataset:
        return dataclasses.replace(
            data,
            targets={n: data.targets[n] for n in names},
            tasks=tuple(t for t in data.tasks if t.name in names),
        )

    return Splits(restrict(splits.train), restrict(splits.val), restrict(splits.test))


def build_module(config: TrainConfig, in_features: int, tasks: Sequence[mtl.Task]) -> nn.Module:
    """The architecture of ``--arch`` for these tasks."""
    hidden, head = config.hidden, config.head_hidden
    if not hidden:
        raise ValueError("--hidden needs at least one width.")
    if config.arch == "hard_sharing":
        return mtl.hard_sharing_mlp(in_features, hidden, tasks, head, config.dropout)
    if config.arch == "mmoe":
        return mtl.MMoE(in_features, config.experts, hidden, tasks, head)
    if config.arch in ("cgc", "ple"):
        levels = {"num_levels": 2} if config.arch == "ple" else {}
        cls = mtl.PLE if config.arch == "ple" else mtl.CGC
        return cls(in_features, config.experts, config.task_experts, hidden, tasks, head, **levels)
    if config.arch == "cross_stitch":
        return mtl.cross_stitch_mlp(in_features, hidden, tasks, dropout=config.dropout)
    if config.arch == "soft_sharing":
        return mtl.soft_sharing_mlp(in_features, hidden, tasks, dropout=config.dropout)
    raise ValueError(f"unknown --arch {config.arch!r}.")


def build_optimizer(config: TrainConfig, total_steps: int) -> optim.GradientTransformation:
    """``--optimizer`` with ``--lr`` (and ``--schedule``), L1, weight decay and clipping."""
    lr: Any = config.lr
    if config.schedule == "cosine":
        lr = optim.cosine_decay_schedule(config.lr, total_steps)
    if config.optimizer == "adam":
        base = optim.adam(lr, weight_decay=config.weight_decay)
    elif config.optimizer == "adamw":
        base = optim.adamw(lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        base = optim.sgd(lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        base = optim.rmsprop(lr, momentum=config.momentum, weight_decay=config.weight_decay)
    parts = []
    if config.l1 > 0:  # λ‖p‖₁ added to the loss: its subgradient joins the gradient
        parts.append(optim.add_l1(config.l1))
    if config.clip_norm is not None:
        parts.append(optim.clip_by_global_norm(config.clip_norm))
    parts.append(base)
    return parts[0] if len(parts) == 1 else optim.chain(*parts)


def resolve_method(config: TrainConfig) -> tuple[aggregators.Aggregator, weightings.Weighting]:
    """``--method`` as an aggregator (with ``--weighting``) or as a loss weighting (with the
    ``sum`` aggregator: the weighted sum of the task losses)."""
    texts = option_texts(config.method_options, "--method-options")
    weighting_texts = option_texts(config.weighting_options, "--weighting-options")
    if config.method in aggregators.names():
        options = aggregators.parse(config.method, texts)
        weighting = weightings.get(
            config.weighting, **weightings.parse(config.weighting, weighting_texts)
        )
        return aggregators.get(config.method, **options), weighting
    if config.method in weightings.names():
        if config.weighting != "equal" or weighting_texts:
            raise ValueError(
                f"--method {config.method} is itself a loss weighting; drop --weighting "
                f"{config.weighting} (and --weighting-options) or pick an aggregator as "
                "--method."
            )
        options = weightings.parse(config.method, texts)
        return aggregators.get("sum"), weightings.get(config.method, **options)
    raise ValueError(
        f"unknown --method {config.method!r}; expected an aggregator "
        f"{aggregators.names()} or a loss weighting {weightings.names()}."
    )


def build(
    config: TrainConfig,
    splits: Splits,
    total_steps: int,
    *,
    aggregator: aggregators.Aggregator | None = None,
    weighting: weightings.Weighting | None = None,
) -> Setup:
    """The model, optimizer and method of a run on these splits; ``aggregator`` /
    ``weighting`` objects (e.g. your own) replace the ones ``--method`` names."""
    tasks = splits.tasks
    module = build_module(config, splits.train.num_features, tasks)
    if aggregator is None or weighting is None:
        named_aggregator, named_weighting = resolve_method(config)
        aggregator = named_aggregator if aggregator is None else aggregator
        weighting = named_weighting if weighting is None else weighting
    regularizer = None
    if config.arch == "soft_sharing" and config.coupling > 0:
        strength = config.coupling

        def regularizer(params: dict[str, Tensor]) -> Tensor:
            return strength * module.coupling_penalty(params)

    return Setup(
        module=module,
        model=mtl.split_module(module),
        tasks=tuple(tasks),
        optimizer=build_optimizer(config, total_steps),
        aggregator=aggregator,
        weighting=weighting,
        regularizer=regularizer,
    )


def resolve_device(name: str) -> torch.device:
    """``--device`` checked against what this machine has."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device must be 'cpu', 'cuda' or 'cuda:N'; got {name!r}.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this machine has no CUDA GPU (torch sees none).")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu', 'cuda' or 'cuda:N'; got {name!r}.")
    return device
