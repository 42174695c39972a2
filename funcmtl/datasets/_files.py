"""Multi-task datasets from files (.csv, .npz, .pt) and from a ``torch.utils.data.Dataset``.

A file is read as named *columns*: a CSV column, an ``.npz`` array or a tensor of a ``.pt``
dict, each ``(N,)`` or ``(N, k)``. ``targets`` maps each task to a spec::

    "regression"                   # column named like the task
    "regression:price"             # column "price"
    "regression:dx,dy"             # two columns -> targets (N, 2), output_size 2
    "binary:clicked"               # 0/1 values
    "classification:label"         # int class ids; classes = max label + 1
    "classification(10):label"     # 10 classes, whatever labels occur

and the inputs are the columns in ``inputs`` (default: every column no target uses, in file
order), concatenated into ``(N, F)`` float32. A NaN (an empty CSV cell) in a target column
means "label missing": the task gets ``mask_value`` NaN (binary, regression) or -1
(classification), which losses and metrics mask out. NaN in the inputs is an error.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "houses.csv"
    ...     _ = path.write_text("area,rooms,price,kind\\n50,2,1.5,0\\n80,3,2.5,2\\n")
    ...     data = fm.datasets.from_file(path, targets={"price": "regression",
    ...                                                 "kind": "classification(3)"})
    >>> data.inputs  # the columns no target uses: area, rooms
    tensor([[50.,  2.],
            [80.,  3.]])
    >>> data.targets
    {'price': tensor([1.5000, 2.5000]), 'kind': tensor([0, 2])}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from funcmtl.datasets._dataset import MultiTaskDataset
from funcmtl.datasets._readers import read_columns
from funcmtl.mtl import Task, check_tasks

_SPEC = re.compile(r"^(classification|binary|regression)(?:\((\d+)\))?(?::(.+))?$")


def _parse_spec(task: str, spec: object) -> tuple[str, int | None, list[str]]:
    """``(kind, classes or None, column names)`` of one ``targets`` entry."""
    match = _SPEC.match(spec.replace(" ", "")) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(
            f"target {task!r}: spec must be 'kind', 'kind:column[,column...]' or "
            f"'classification(C)[:column]' with kind classification|binary|regression; "
            f"got {spec!r}."
        )
    kind, classes, columns = match.groups()
    if classes is not None and kind != "classification":
        raise ValueError(
            f"target {task!r}: only classification takes a class count '(C)'; got {spec!r}."
        )
    names = columns.split(",") if columns else [task]
    if kind == "classification" and len(names) != 1:
        raise ValueError(f"target {task!r}: classification needs one label column; got {names}.")
    return kind, None if classes is None else int(classes), names


def _gather(columns: Mapping[str, Tensor], names: Sequence[str], source: str) -> Tensor:
    """The named columns side by side, ``(N, total width)``."""
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise ValueError(
            f"{source}: no column {unknown[0]!r}; available columns: {', '.join(columns)}."
        )
    sizes = {name: columns[name].shape[0] for name in names}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{source}: columns must have the same length N; got {sizes}.")
    return torch.cat([columns[name].reshape(sizes[name], -1) for name in names], dim=1)


def _target(task: str, kind: str, classes: int | None, values: Tensor) -> tuple[Task, Tensor]:
    """The :class:`Task` and the typed target tensor of one task from ``(N, k)`` float64."""
    missing = torch.isnan(values)
    if bool(missing.all()):
        raise ValueError(
            f"target {task!r}: every cell of its column(s) is empty or NaN: it has no label to "
            "learn from; check the column name or drop the task."
        )
    if kind == "classification":
        labels = values[:, 0]
        present = labels[~missing[:, 0]]
        fractional = present != torch.round(present)
        if fractional.any():
            raise ValueError(
                f"target {task!r}: class labels must be integers; found "
                f"{float(present[fractional][0])!r} ({int(fractional.sum())} such values)."
            )
        top = int(present.max()) + 1
        if classes is None:
            _check_inferred_classes(task, present, top)
        spec = Task(
            task,
            kind,
            classes if classes is not None else max(top, 2),
            mask_value=-1 if missing.any() else None,
        )
        return spec, torch.where(missing[:, 0], -1.0, labels).to(torch.int64)
    width = values.shape[1]
    spec = Task(task, kind, width, mask_value=math.nan if missing.any() else None)
    return spec, (values[:, 0] if width == 1 else values).to(torch.float32)


_FEW_CLASSES = 1000  # an inferred class count above this must be mostly used


def _check_inferred_classes(task: str, present: Tensor, count: int) -> None:
    """Refuse ``max label + 1`` classes when a stray large label makes most of them unused
    (a label of 3e5 would build a 300001-way head and its metrics)."""
    distinct = int(torch.unique(present).numel())
    if count > _FEW_CLASSES and distinct < count / 2:
        raise ValueError(
            f"target {task!r}: the largest label is {count - 1}, so {count} classes would be "
            f"inferred, but only {distinct} distinct labels occur; relabel the classes 0..K-1 "
            f"or write 'classification({count})' if you mean that many."
        )


def from_columns(
    columns: Mapping[str, Tensor],
    *,
    targets: Mapping[str, str],
    inputs: Sequence[str] | None = None,
    name: str = "columns",
    description: str = "",
) -> MultiTaskDataset:
    """A dataset from named columns ``(N,)`` / ``(N, k)`` (see the module doc for ``targets``)."""
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError(
            f"`targets` must map each task name to a spec such as 'regression:column'; got "
            f"{targets!r}."
        )
    parsed = {task: _parse_spec(task, spec) for task, spec in targets.items()}
    used = {column for _, _, names in parsed.values() for column in names}
    if inputs is None:
        inputs = [column for column in columns if column not in used]
    elif isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise ValueError(
            f"{name}: no input columns left; every column ({', '.join(columns)}) is a target."
        )
    both = sorted(used.intersection(inputs))
    if both:
        raise ValueError(
            f"{name}: column {both[0]!r} is both an input and a target; drop it from `inputs`."
        )
    x = _gather(columns, list(inputs), name)
    tasks, ys = [], {}
    for task, (kind, classes, names) in parsed.items():
        values = _gather(columns, names, name)
        if values.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name}: target {task!r} has {values.shape[0]} rows but the inputs have "
                f"{x.shape[0]}; every column must have the same length N."
            )
        try:
            spec, ys[task] = _target(task, kind, classes, values)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        tasks.append(spec)
    return MultiTaskDataset(name, x.to(torch.float32), ys, tuple(tasks), description).validate()


def from_file(
    path: str | Path,
    *,
    inputs: Sequence[str] | None = None,
    targets: Mapping[str, str],
) -> MultiTaskDataset:
    """A :class:`MultiTaskDataset` from a ``.csv``, ``.npz`` or ``.pt`` file.

    Args:
        path: a ``.csv`` (header row, numbers only, empty cell = missing), ``.npz`` (arrays by
            name; needs numpy) or ``.pt`` file (a dict name -> tensor, loaded with
            ``weights_only=True``).
        inputs: the input columns, in order; ``None`` takes every column not used by a target.
        targets: task name -> spec: ``"kind"``, ``"kind:col[,col...]"`` or
            ``"classification(C)[:col]"``, kind one of classification|binary|regression; the
            column defaults to the task name (details in the module doc).

    Returns:
        The dataset, named after the file's stem, validated.

    Raises:
        ValueError: unknown extension, missing file, unknown column (the message lists the
            available ones), non-numeric cell (with line and column), length mismatch, or any
            :meth:`MultiTaskDataset.validate` failure.
    """
    path = Path(path)
    columns = read_columns(path)
    description = f"Loaded from {path.name} ({', '.join(f'{t}: {s}' for t, s in targets.items())})."
    return from_columns(
        columns, targets=targets, inputs=inputs, name=path.stem, description=description
    )


def from_torch_dataset(
    dataset: torch.utils.data.Dataset,
    tasks: Sequence[Task],
    *,
    name: str = "torch_dataset",
    description: str = "",
) -> MultiTaskDataset:
    """Materialise a map-style dataset whose item ``i`` is ``(x, {task name: y})``.

    Each ``x`` is flattened to one row of ``inputs`` (float32); each task's ``y`` values are
    stacked, as int64 for classification and float32 otherwise.

    Args:
        dataset: supports ``len`` and integer indexing.
        tasks: the :class:`~funcmtl.mtl.Task` of every target key.
        name, description: recorded on the result.
    """
    tasks = check_tasks(tasks)
    n = len(dataset)
    rows, columns = [], {task.name: [] for task in tasks}
    for i in range(n):
        item = dataset[i]
        pair = isinstance(item, (tuple, list)) and len(item) == 2
        if not (pair and isinstance(item[1], Mapping)):
            raise ValueError(
                f"{name}: item {i} must be (x, {{task name: y}}); got {type(item).__name__}."
            )
        x, ys = item
        absent = [task for task in columns if task not in ys]
        if absent:
            raise ValueError(f"{name}: item {i} has no target {absent[0]!r}; found {sorted(ys)}.")
        rows.append(torch.as_tensor(x).reshape(-1))
        for task in columns:
            columns[task].append(torch.as_tensor(ys[task]))
    if n == 0:
        raise ValueError(f"{name}: the dataset is empty; expected at least one item.")
    widths = {int(row.numel()) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"{name}: every x must have the same size; got sizes {sorted(widths)}.")
    targets = {task.name: _stack_targets(name, task, columns[task.name]) for task in tasks}
    inputs = torch.stack(rows).to(torch.float32)
    return MultiTaskDataset(name, inputs, targets, tasks, description).validate()


def _stack_targets(source: str, task: Task, values: list[Tensor]) -> Tensor:
    """One task's per-item targets stacked to ``(N,)`` or ``(N, k)`` in the task's dtype."""
    sizes = sorted({int(value.numel()) for value in values})
    width = 1 if task.kind == "classification" else task.output_size
    if sizes != [width]:
        raise ValueError(
            f"{source}: every target of task {task.name!r} must hold {width} value(s) "
            f"(output_size); got sizes {sizes}."
        )
    shape = (len(values),) if task.kind == "classification" else (len(values), *task.output_shape)
    stacked = torch.stack([value.reshape(-1) for value in values]).reshape(shape)
    if task.kind != "classification":
        return stacked.to(torch.float32)
    if stacked.is_floating_point() and not torch.equal(stacked, torch.round(stacked)):
        raise ValueError(
            f"{source}: labels of task {task.name!r} must be integer class ids; found "
            f"{float(stacked[stacked != torch.round(stacked)][0])!r}."
        )
    return stacked.to(torch.int64)
