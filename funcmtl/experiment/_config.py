"""The typed configuration of a training run (also the ``funcmtl train`` flags) and presets."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

Arch = Literal["hard_sharing", "mmoe", "cgc", "ple", "cross_stitch", "soft_sharing"]
GradientPath = Literal["exact", "gramian", "representation"]
OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Train a multi-task model (or ``--members K`` vectorized copies) and report per task."""

    data: str = "multidigits"
    """Built-in dataset ('multidigits', 'synthetic') or a .csv / .npz / .pt file."""
    data_options: tuple[str, ...] = ()
    """Dataset options as key=value, e.g. 'correlation=0.2' 'num_tasks=2' for synthetic."""
    inputs: tuple[str, ...] = ()
    """For a file: the input columns (default: every column that is not a target)."""
    targets: tuple[str, ...] = ()
    """For a file: one 'task=kind[:column,...]' per task (kind: classification, binary,
    regression)."""
    arch: Arch = "hard_sharing"
    """Architecture: hard parameter sharing, MMoE, CGC, PLE, cross-stitch or soft sharing."""
    hidden: tuple[int, ...] = (256, 128)
    """Hidden widths of the shared trunk (of each expert / tower for the other archs)."""
    head_hidden: tuple[int, ...] = ()
    """Hidden widths of each task's head (tower)."""
    experts: int = 4
    """Shared experts (mmoe, cgc, ple)."""
    task_experts: int = 1
    """Task-specific experts per task (cgc, ple)."""
    dropout: float = 0.0
    """Dropout rate of the hidden layers (hard_sharing, cross_stitch, soft_sharing)."""
    coupling: float = 1e-3
    """L2 coupling strength λ between the towers (soft_sharing)."""
    method: str = "mean"
    """Aggregator (mean, pcgrad, mgda, cagrad, upgrad, ...) or loss weighting (uncertainty,
    dwa, famo, ...); `funcmtl methods` lists them all."""
    method_options: tuple[str, ...] = ()
    """Options of the method as key=value, e.g. 'c=0.4' for cagrad; `funcmtl methods NAME`
    shows a method's options, their types and defaults."""
    weighting: str = "equal"
    """Loss weighting combined with an aggregator ``--method``."""
    weighting_options: tuple[str, ...] = ()
    """Options of ``--weighting`` as key=value, e.g. 'temperature=3' for dwa."""
    path: GradientPath = "exact"
    """Per-task gradients wrt the shared parameters (exact, gramian) or the representation."""
    optimizer: OptimizerName = "adam"
    """Optimizer."""
    lr: float = 1e-3
    """Learning rate."""
    momentum: float = 0.9
    """Momentum (sgd, rmsprop)."""
    weight_decay: float = 0.0
    """L2 weight decay (decoupled for adamw)."""
    l1: float = 0.0
    """L1 penalty strength on the parameters."""
    clip_norm: float | None = None
    """Clip the update's global gradient norm to this value."""
    schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule over the run."""
    batch_size: int = 128
    """Examples per step."""
    epochs: int = 10
    """Passes over the training split (ignored when --steps is given)."""
    steps: int | None = None
    """Total optimizer steps (overrides --epochs)."""
    members: int = 1
    """Independently initialised copies trained in one vmapped pass (seeds seed..seed+K-1)."""
    seed: int = 0
    """Seed of the data split, initialisation, data order and dropout."""
    eval_every: int = 0
    """Evaluate on the validation split every this many steps (0: once per epoch)."""
    log_every: int = 50
    """Log training metrics every this many steps."""
    patience: int | None = None
    """Early stopping: stop after this many evaluations without a lower validation loss and
    keep the best parameters."""
    checkpoint_every: int = 500
    """Save a checkpoint every this many steps (and at the end)."""
    out: Path | None = None
    """Run directory: config.json, metrics.jsonl, summary.json, checkpoint.pt."""
    resume: bool = False
    """Continue the run in --out from its checkpoint (bit-identical to an uninterrupted run)."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'cuda:N'."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to OUT/tensorboard (needs the tensorboard extra)."""
    skip_nonfinite: bool = False
    """Skip (and count) steps whose loss is not finite instead of stopping the run."""
    baselines: bool = False
    """Also train one single-task model per task and report Δm% against them."""


# Keys that may differ between a run and its --resume (they do not change the results).
RESUMABLE_KEYS = frozenset({"resume", "device", "tensorboard", "out"})

PRESETS: dict[str, dict[str, Any]] = {
    "multidigits": {},
    "quick": {"epochs": 2, "eval_every": 0, "log_every": 20},
    # Ma et al. 2018, section 5.1 (MMoE vs Shared-Bottom on the `synthetic` data): 8 experts
    # of one hidden layer of 16 units, towers of one hidden layer of 8 units; Adam. The paper
    # grid-searches the learning rate over [1e-4, 1e-3, 1e-2]; here it is fixed at 1e-3
    # (Adam's default, which their section 3.3 uses), not searched. Steps and batch size are
    # not in the paper: both presets train 3000 steps of 256 examples on the generator's
    # default 200k examples (see funcmtl/datasets/_synthetic.py).
    "synthetic-mmoe": {
        "data": "synthetic",
        "data_options": ("correlation=0.5",),
        "arch": "mmoe",
        "hidden": (16,),
        "head_hidden": (8,),
        "experts": 8,
        "lr": 1e-3,
        "steps": 3000,
        "batch_size": 256,
    },
    # The parameter-matched Shared-Bottom of section 5.1: one shared hidden layer of
    # 13056 / (100 + 8 × 2) ≈ 113 units (the paper counts experts and towers, not the gates),
    # the same towers, data and training budget as synthetic-mmoe.
    "synthetic-shared": {
        "data": "synthetic",
        "data_options": ("correlation=0.5",),
        "arch": "hard_sharing",
        "hidden": (113,),
        "head_hidden": (8,),
        "lr": 1e-3,
        "steps": 3000,
        "batch_size": 256,
    },
}
"""Named starting points: ``--preset NAME`` sets these fields; explicit flags override them."""


def preset(name: str | None, cls: type = TrainConfig) -> Any:
    """``cls()`` with the preset's fields (the defaults of the command line)."""
    if name is None:
        return cls()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    return dataclasses.replace(cls(), **{k: v for k, v in PRESETS[name].items() if k in fields})


def option_texts(items: tuple[str, ...], what: str) -> dict[str, str]:
    """``('c=0.4', 'rescale=1')`` -> ``{'c': '0.4', 'rescale': '1'}``, the texts unparsed (a
    method's registry parses them by its options' types)."""
    texts: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"{what} must be key=value items; got {item!r}.")
        texts[name] = text
    return texts


def parse_options(items: tuple[str, ...], what: str) -> dict[str, Any]:
    """``('num_tasks=3', 'name=a')`` -> ``{'num_tasks': 3, 'name': 'a'}`` (Python literals,
    else str): for options without declared types (``--data-options``)."""
    options: dict[str, Any] = {}
    for name, text in option_texts(items, what).items():
        try:
            options[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[name] = text
    return options


def check(config: TrainConfig) -> None:
    """Reject values no run can use, one line each."""

    def positive(name: str, value: Any, allow_none: bool = False) -> None:
        if allow_none and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive; got {value!r}.")

    positive("lr", config.lr)
    if not math.isfinite(config.lr):
        raise ValueError(f"--lr must be a finite positive number; got {config.lr!r}.")
    for name in ("batch_size", "epochs", "members", "log_every", "checkpoint_every"):
        positive(name, getattr(config, name))
    positive("steps", config.steps, allow_none=True)
    positive("patience", config.patience, allow_none=True)
    positive("clip_norm", config.clip_norm, allow_none=True)
    if config.eval_every < 0:
        raise ValueError(f"--eval-every must be >= 0; got {config.eval_every}.")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1); got {config.dropout}.")
    for name in ("weight_decay", "l1", "coupling"):
        value = getattr(config, name)
        if value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0; got {value}.")
    if any(w < 1 for w in (*config.hidden, *config.head_hidden)):
        raise ValueError(
            "--hidden and --head-hidden widths must be positive integers; got "
            f"{list(config.hidden)} and {list(config.head_hidden)}."
        )
    if config.resume and config.out is None:
        raise ValueError("--resume needs --out DIR: the run directory to continue.")


def as_train_config(config: Any) -> TrainConfig:
    """The :class:`TrainConfig` fields of ``config`` (a command's config that extends it)."""
    return TrainConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)})


def to_json(config: Any) -> dict[str, Any]:
    """The config as JSON-able values (paths as strings, tuples as lists)."""
    result = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[field.name] = value
    return result


def from_json(values: dict[str, Any], cls: type = TrainConfig) -> Any:
    """Inverse of :func:`to_json` (unknown keys are an error: another version wrote it)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"config.json has keys this funcmtl does not know: {unknown}.")
    converted = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        if name == "out" and value is not None:
            value = Path(value)
        converted[name] = value
    return cls(**converted)
