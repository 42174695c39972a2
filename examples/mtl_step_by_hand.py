"""One multi-task step by hand from the public pieces: what ``fm.mtl.make_step`` does.

Task losses -> per-task Jacobian on the shared trunk -> aggregator (PCGrad) -> optimizer
(Adam); each head takes its own task's gradient. The result equals ``make_step``'s.

    python examples/mtl_step_by_hand.py
"""

import torch

import funcmtl as fm

train, _, _ = fm.datasets.load_splits("multidigits", seed=0, num_pairs=(256, 16, 16))
tasks, (x, y) = train.tasks, fm.data.take(train.data, torch.arange(64))
module = fm.mtl.hard_sharing_mlp(train.num_features, (64,), tasks)
params, buffers = fm.init(module, fm.random.key(0))
apply, optimizer, pcgrad = fm.Apply(module), fm.optim.adam(1e-3), fm.aggregators.get("pcgrad")
key = fm.random.key(1)
_, _, k_aggregate = fm.random.split(key, 3)  # make_step's keys: forward, weighting, aggregator


def losses_fn(p):  # (T,) task losses on the batch, in train mode
    return fm.mtl.task_losses(tasks, apply(p, buffers, x, train=True)[0], y)


shared = [name for name in params if name.startswith("shared.")]
losses, jacobian, head_grads = fm.mtl.task_jacobian(losses_fn, params, shared=shared)
direction, _ = pcgrad.update(jacobian, pcgrad.init(len(tasks)), key=k_aggregate)
grads = {name: {**direction, **head_grads}[name] for name in params}
new_params, _ = fm.optim.update_params(optimizer, grads, optimizer.init(params), params)

step = fm.mtl.make_step(fm.mtl.split_module(module), tasks, optimizer, pcgrad)
state, _ = step(fm.mtl.init_state(params, buffers, tasks, optimizer, pcgrad), (x, y), key)
error = max(float((new_params[n] - state.params[n]).abs().max()) for n in params)
print(f"task losses {losses.detach().numpy().round(4)}")
print(f"largest difference from make_step: {error:.1e}")
