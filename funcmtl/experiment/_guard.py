"""Which members' steps to refuse: a non-finite loss, a non-finite new state, or an update
whose result no longer has a finite loss.

The loss of a step is computed *before* its update, so it cannot see the update that blows
the weights up (``--lr 1e30`` gives finite weights of 1e30 and NaN only at the next step).
:func:`state_finite` therefore checks every floating leaf of the new state at every step
(on the device, transferred with the step's other checks), and :func:`loss_finite` the loss of
the new parameters on the step's batch (one extra forward pass): at every step with
``--skip-nonfinite``, otherwise before every periodic, final and interrupt checkpoint (without
the flag a finite blow-up between checkpoints shows in the next step's loss).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from funcmtl import mtl, train, tree
from funcmtl._functional import Apply


def state_finite(state: Any, members: int) -> Tensor:
    """``(members,)``: every floating leaf of member k's stacked state is finite.

    Checked through per-member sums (NaN and inf propagate through a sum): two small kernels
    per leaf instead of four. A sum of finite values overflows only if they are near the
    dtype's largest value, which is a blown-up state as well (low precision sums in float32).
    """
    sums = []
    for leaf in tree.leaves(state):
        if isinstance(leaf, Tensor) and leaf.is_floating_point() and leaf.dim() > 0:
            wide = torch.float32 if leaf.element_size() < 4 else leaf.dtype
            sums.append(leaf.reshape(members, -1).sum(-1, dtype=wide))
    if not sums:
        return torch.ones(members, dtype=torch.bool)
    if len({x.dtype for x in sums}) > 1:
        sums = [x.double() for x in sums]
    return torch.isfinite(torch.stack(sums)).all(0)


@torch.no_grad()
def loss_finite(apply: Apply, tasks, state: mtl.MTLState, batch) -> Tensor:
    """``(K,)``: member k's task losses on its batch at its (new) parameters are finite."""
    inputs, targets = batch

    def losses(params, buffers, x, y):
        return mtl.task_losses(tasks, apply(params, buffers, x)[0], y)

    values = torch.func.vmap(losses)(state.params, state.buffers, inputs, targets)
    return torch.isfinite(values).all(-1)


def describe(finite: Tensor, losses: Tensor, tasks, first_member: int) -> str:
    """What went wrong for the first refused member (``first_member``: the global index of
    this rank's member 0), or that it happened on another rank."""
    if bool(finite.all()):
        return "a member on another rank"
    member = int((~finite).nonzero()[0])
    bad = ~torch.isfinite(losses[member])
    if not bool(bad.any()):
        return (f"member {first_member + member}: its update gives non-finite weights or a "
                "non-finite loss")
    names = [t.name for t, b in zip(tasks, bad.tolist(), strict=True) if b]
    return f"member {first_member + member}, non-finite loss of task(s) {names}"


class NonFinite(ValueError):
    """A step that is not finite, without --skip-nonfinite."""


class GuardedStep(train.Callback):
    """The run's step, refusing (or, with ``skip``, skipping) members whose step is not finite,
    and the per-step agreement of the ranks (:meth:`funcmtl.experiment._layout.Layout.agree`)
    on those members and on a stop signal, which :meth:`stop_requested` then reports.

    ``saves(done)`` tells whether the state after step ``done`` is checkpointed: its loss at
    the new weights is checked then (and at every step with ``skip``).
    """

    def __init__(self, step, apply, tasks, layout, stop, *, skip: bool, saves, start: int,
                 skipped: int = 0):
        self.step, self.apply, self.tasks, self.layout, self.stop = step, apply, tasks, layout, stop
        self.skip, self.saves, self.done = skip, saves, start
        self.skipped = skipped  # steps with a refused member, this run and those it continues
        self.signum: int | None = None  # the signal the ranks agreed to stop on

    def __call__(self, state: Any, batch: Any, keys: Tensor):
        new_state, metrics = self.step(state, batch, keys)
        self.done += 1
        update = (self.apply, self.tasks, new_state, batch)
        finite = torch.isfinite(metrics["losses"]).all(-1)
        finite = finite & state_finite(new_state, len(self.layout.members)).to(finite)
        checked = self.skip or self.saves(self.done)
        if checked:
            finite = finite & loss_finite(*update)
        finite = finite.cpu()  # one transfer for the step's checks
        bad, self.signum = self.layout.agree(int((~finite).sum()), self.stop.signum)
        if self.signum is not None:
            self.stop.agreed(self.signum)
            if not checked:  # about to be saved: check it too
                finite &= loss_finite(*update).cpu()
                bad = self.layout.count(int((~finite).sum()))
        if bad == 0:
            return new_state, metrics
        if not self.skip:
            where = describe(finite, metrics["losses"], self.tasks, self.layout.members.start)
            raise NonFinite(
                f"non-finite loss or update at step {self.done} ({where}); lower --lr, add "
                "--clip-norm, check the data, or pass --skip-nonfinite"
            )
        self.skipped += 1
        return tree.select(finite, new_state, state), metrics

    def stop_requested(self) -> bool:
        return self.signum is not None
