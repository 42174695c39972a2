"""``chain``: run transforms one after the other."""

from __future__ import annotations

from typing import Any

from funcmtl.optim._base import GradientTransformation, OptState, PyTree


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transforms: the updates flow through ``transforms`` left to right.

    The state is a tuple with one entry per transform.

    Args:
        *transforms: the transforms to apply, in order.

    Returns:
        A :class:`GradientTransformation` whose state is ``tuple(t.init(params) for t in
        transforms)``.

    Example:
        >>> params, grads = {"w": torch.ones(3)}, {"w": torch.tensor([1.0, -2.0, 0.5])}
        >>> opt = fm.optim.chain(fm.optim.clip_by_global_norm(1.0), fm.optim.sgd(1.0))
        >>> state = opt.init(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> updates  # the gradient, clipped to norm 1, then scaled by -1
        {'w': tensor([-0.4364,  0.8729, -0.2182])}
    """
    for index, transform in enumerate(transforms):
        if not isinstance(transform, GradientTransformation):
            raise TypeError(
                f"`chain` takes GradientTransformations; argument {index} is "
                f"{type(transform).__name__}."
            )

    def init_fn(params: PyTree) -> tuple[OptState, ...]:
        return tuple(t.init(params) for t in transforms)

    def update_fn(
        updates: PyTree, state: tuple[Any, ...], params: PyTree | None = None
    ) -> tuple[PyTree, tuple[OptState, ...]]:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            found = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"`chain.update` expects the state built by its `init`: a tuple of "
                f"{len(transforms)} entries; got {found}."
            )
        new_state = []
        for transform, inner in zip(transforms, state, strict=True):
            updates, inner = transform.update(updates, inner, params)
            new_state.append(inner)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)
