"""What every multi-task architecture shares: the parameter partition and the building blocks.

A multi-task model maps ``x`` to ``{task name: output}``. Its parameters fall into two kinds:
*shared* ones, which more than one task's output depends on, and *task-specific* ones, each
of which exactly one task's output depends on. :class:`MultiTaskModel` states that partition
once (``task_of_parameter``), so callers can pick "the shared parameters" of any
architecture generically, e.g. to give them their own optimizer with
``fm.optim.partition`` or to restrict per-task gradients (the Jacobian ``(tasks, params)``)
to them. Names are those of ``named_parameters()``, the keys of ``fm.functional``'s params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from funcmtl.mtl._tasks import Task, check_task_name

__all__ = ["MultiTaskModel", "SplitMultiTaskModel", "TaskHeads", "mlp", "output_head"]


class MultiTaskModel(nn.Module):
    """Abstract base: ``forward(x) -> {task: output}`` and a shared / per-task partition.

    Subclasses implement :meth:`task_of_parameter`; the two listings follow from it.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self._task_names = tuple(task_names)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks, in the order of the output dict."""
        return self._task_names

    def task_of_parameter(self, name: str) -> str | None:
        """The one task whose output depends on parameter ``name``; ``None`` if shared."""
        if name not in dict(self.named_parameters()):
            raise ValueError(
                f"{type(self).__name__} has no parameter {name!r}; expected a name from "
                "named_parameters()."
            )
        return self._owner(name)

    def _owner(self, name: str) -> str | None:
        """``task_of_parameter`` for a name known to exist; what subclasses implement."""
        raise NotImplementedError

    def shared_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the parameters shared between tasks."""
        return [name for name, _ in self.named_parameters() if self._owner(name) is None]

    def task_parameter_names(self) -> dict[str, list[str]]:
        """``task -> names`` of its own parameters; with the shared ones, a partition."""
        owned: dict[str, list[str]] = {task: [] for task in self.task_names}
        for name, _ in self.named_parameters():
            task = self._owner(name)
            if task is not None:
                owned[task].append(name)
        return owned


class TaskHeads(nn.Module):
    """The per-task half of a :class:`SplitMultiTaskModel`: ``(z, x) -> {t: heads[t](z, x)}``.

    Every head is called as ``head(z, x)``, with the shared representation ``z`` and the
    input ``x`` (MMoE's gates read ``x``); ``self.heads`` is an ``nn.ModuleDict``.
    """

    def __init__(self, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.heads = module_dict(heads, "heads")

    def forward(self, z: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {task: head(z, x) for task, head in self.heads.items()}


class SplitMultiTaskModel(MultiTaskModel):
    """A model of the form ``forward(x) = tasks(shared(x), x)``.

    ``self.shared`` maps the input to a representation ``z``; ``self.tasks`` (a
    :class:`TaskHeads`) maps ``(z, x)`` to the outputs. Every parameter is named
    ``shared.…`` (shared) or ``tasks.heads.<task>.…`` (that task's own), so per-task
    gradients can run ``shared`` once and differentiate through ``z``.
    """

    def __init__(self, shared: nn.Module, tasks: TaskHeads) -> None:
        if not isinstance(shared, nn.Module):
            raise ValueError(f"`shared` must be an nn.Module; got {type(shared).__name__}.")
        if not isinstance(tasks, TaskHeads):
            raise ValueError(f"`tasks` must be a TaskHeads; got {type(tasks).__name__}.")
        super().__init__(tuple(tasks.heads))
        self.shared = shared
        self.tasks = tasks

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.tasks(self.shared(x), x)

    def _owner(self, name: str) -> str | None:
        # "tasks.heads.<task>.<rest>": task names contain no ".", so the split is exact.
        parts = name.split(".")
        return parts[2] if parts[0] == "tasks" else None


class SqueezeLast(nn.Module):
    """``(..., 1) -> (...)``: a scalar output per example, to match ``(N,)`` targets."""

    def forward(self, x: Tensor) -> Tensor:
        return x.squeeze(-1)


def check_sizes(value: object, name: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    ok = isinstance(value, Sequence) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    )
    if not ok or (not allow_empty and len(value) == 0):
        need = "a" if allow_empty else "a non-empty"
        raise ValueError(f"`{name}` must be {need} sequence of positive ints; got {value!r}.")
    return tuple(value)


def check_positive(value: object, name: str) -> int:
    """``value`` if it is a positive int, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return value


def mlp(
    in_features: int,
    hidden: Sequence[int],
    *,
    dropout: float = 0.0,
    hidden_name: str = "hidden",
) -> list[nn.Module]:
    """Layers ``[Linear, ReLU, (Dropout)] * len(hidden)``, ready for ``nn.Sequential``."""
    check_positive(in_features, "in_features")
    hidden = check_sizes(hidden, hidden_name)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must lie in [0, 1); got {dropout!r}.")
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return layers


def output_head(
    in_features: int,
    task: Task,
    hidden: Sequence[int] = (),
    *,
    dropout: float = 0.0,
    hidden_name: str = "head_hidden",
) -> nn.Sequential:
    """A task's head: an MLP over ``hidden``, then ``Linear(-, output_size)``.

    The output has the task's shape (``Task.output_shape``): the last axis is squeezed for
    binary and regression tasks with ``output_size == 1``.
    """
    if not isinstance(task, Task):
        raise ValueError(f"`task` must be a Task; got {type(task).__name__}.")
    layers = mlp(in_features, hidden, dropout=dropout, hidden_name=hidden_name)
    layers.append(nn.Linear(hidden[-1] if hidden else in_features, task.output_size))
    if task.output_shape == ():
        layers.append(SqueezeLast())
    return nn.Sequential(*layers)


def module_dict(modules: Mapping[str, nn.Module], name: str) -> nn.ModuleDict:
    """``nn.ModuleDict(modules)`` after checking it is a non-empty ``str -> Module`` map."""
    if not isinstance(modules, Mapping) or len(modules) == 0:
        found = f"{len(modules)} entries" if isinstance(modules, Mapping) else type(modules)
        raise ValueError(f"`{name}` must be a non-empty dict task name -> nn.Module; got {found}.")
    for task, module in modules.items():
        check_task_name(task, f"A key of `{name}`")
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"`{name}[{task!r}]` must be an nn.Module; got {type(module).__name__}."
            )
    return nn.ModuleDict(dict(modules))
