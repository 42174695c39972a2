"""``partition``: a different transform for each labelled group of params (trunk vs heads)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from torch.utils import _pytree as pytree

from funcmtl import tree
from funcmtl.optim._base import GradientTransformation, OptState, PyTree

Labels = PyTree | Callable[[str], str]


class PartitionState(NamedTuple):
    """One inner state per label."""

    inner_states: dict[str, OptState]  # label -> state of transforms[label]


def leaf_names(params: PyTree) -> list[str]:
    """Dotted names of the leaves of ``params``: ``"encoder.weight"``, ``"heads.0.bias"``.

    For ``dict[str, Tensor]`` params the name of a leaf is its key.
    """
    names = []
    for path, _ in pytree.tree_flatten_with_path(params)[0]:
        parts = []
        for entry in path:
            if isinstance(entry, pytree.MappingKey):
                parts.append(str(entry.key))
            elif isinstance(entry, pytree.SequenceKey):
                parts.append(str(entry.idx))
            elif isinstance(entry, pytree.GetAttrKey):
                parts.append(entry.name)
            else:
                parts.append(str(entry))
        names.append(".".join(parts))
    return names


def _label_list(labels: Labels, params: PyTree, known: Mapping[str, Any], what: str) -> list[str]:
    """One label per leaf of ``params`` (called ``what``), checked against ``known``."""
    names = leaf_names(params)
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"`partition` needs distinct dotted leaf names in `{what}`; found {repeated} more "
            "than once."
        )
    if callable(labels):
        found = [labels(name) for name in names]
    else:
        label_leaves, label_spec = pytree.tree_flatten(labels)
        if label_spec != tree.structure(params):
            tree.check_same_structure(
                [params, labels], what=f"`{what}` (entry 0) and `labels` (entry 1)"
            )
        found = label_leaves
    unknown = sorted({repr(x) for x in found if not isinstance(x, str) or x not in known})
    if unknown:
        where = [n for n, x in zip(names, found, strict=True) if repr(x) in unknown]
        raise ValueError(
            f"`partition` labels must be keys of `transforms` {sorted(known)}; found unknown "
            f"labels {unknown} for leaves {where[:5]}."
        )
    return found


def partition(
    transforms: Mapping[str, GradientTransformation], labels: Labels
) -> GradientTransformation:
    """Apply ``transforms[label]`` to the leaves that carry ``label``.

    Each group of leaves is handed to its transform as a ``dict`` from dotted leaf name
    (see :func:`leaf_names`) to tensor, so a transform that looks at the whole tree, such as
    :func:`clip_by_global_norm`, sees only its group.

    Args:
        transforms: label -> transform, e.g. ``{"trunk": sgd(0.01), "heads": sgd(0.1)}``.
        labels: either a pytree of label strings with the structure of the params, or a
            function ``name -> label`` called with each leaf's dotted name (for
            ``dict[str, Tensor]`` params: the key).

    Returns:
        A :class:`GradientTransformation` with state :class:`PartitionState`.

    Raises:
        ValueError: (in ``init``/``update``) a label that is not a key of ``transforms``, or
            a label tree whose structure differs from the params.

    Example:
        >>> opt = fm.optim.partition(
        ...     {"trunk": fm.optim.adam(1e-3), "heads": fm.optim.adam(1e-2)},
        ...     lambda name: "heads" if name.startswith("heads.") else "trunk",
        ... )
        >>> state = opt.init({"trunk.w": torch.ones(2), "heads.a.w": torch.ones(2)})
        >>> state.inner_states["heads"][0].mu  # each group has its own Adam moments
        {'heads.a.w': tensor([0., 0.])}
    """
    transforms = dict(transforms)
    for label, transform in transforms.items():
        if not isinstance(transform, GradientTransformation):
            raise TypeError(
                f"`transforms[{label!r}]` must be a GradientTransformation; got "
                f"{type(transform).__name__}."
            )

    def split(trees: PyTree, label_list: list[str]) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {label: {} for label in transforms}
        for name, label, x in zip(leaf_names(trees), label_list, tree.leaves(trees), strict=True):
            groups[label][name] = x
        return groups

    def init_fn(params: PyTree) -> PartitionState:
        groups = split(params, _label_list(labels, params, transforms, "params"))
        return PartitionState({label: transforms[label].init(groups[label]) for label in groups})

    def update_fn(
        updates: PyTree, state: PartitionState, params: PyTree | None = None
    ) -> tuple[PyTree, PartitionState]:
        if params is not None:
            tree.check_same_structure([params, updates], what="`params` and `updates`")
        label_list = _label_list(labels, updates, transforms, "updates")
        grads = split(updates, label_list)
        params_groups = split(params, label_list) if params is not None else {}
        new_updates, new_states = {}, {}
        for label, transform in transforms.items():
            new_updates[label], new_states[label] = transform.update(
                grads[label], state.inner_states[label], params_groups.get(label)
            )
        out = [
            new_updates[label][name]
            for name, label in zip(leaf_names(updates), label_list, strict=True)
        ]
        return pytree.tree_unflatten(out, tree.structure(updates)), PartitionState(new_states)

    return GradientTransformation(init_fn, update_fn)
