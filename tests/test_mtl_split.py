"""split_module on any {task: output} module, and HardSharing's docstring example, as run."""

import pytest
import torch
from torch import nn

import funcmtl as fm

TASKS = [fm.mtl.Task("a", "classification", 3), fm.mtl.Task("b", "regression", 1)]


class Own(nn.Module):
    """A user's multi-task module: a trunk and two heads, no funcmtl base class."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 8)
        self.head_a, self.head_b = nn.Linear(8, 3), nn.Linear(8, 1)

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return {"a": self.head_a(z), "b": self.head_b(z).squeeze(-1)}


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(10, 4, generator=g), {"a": torch.randint(0, 3, (10,), generator=g),
                                             "b": torch.randn(10, generator=g)}


def test_a_shared_and_heads_module_refuses_a_second_description_of_its_split():
    model = fm.mtl.HardSharing(nn.Linear(4, 8), {"a": nn.Linear(8, 3), "b": nn.Linear(8, 1)})
    with pytest.raises(ValueError, match="`shared` and `tasks.heads`, which define the split"):
        fm.mtl.split_module(model, shared_names=("shared.weight",))


def test_a_head_with_the_wrong_output_shape_is_named_clearly():
    outputs = {"a": torch.randn(4, 3), "b": torch.randn(4, 1)}
    targets = {"a": torch.zeros(4, dtype=torch.long), "b": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"outputs\['b'\] must have shape \(N,\) .*got \(4, 1\)"
                       r".*fm.mtl.output_head"):
        fm.mtl.task_losses(TASKS, outputs, targets)


def test_own_module_needs_task_names_and_declared_shared_parameters():
    module = Own()
    with pytest.raises(ValueError, match=r"needs the task names: pass `task_names=`"):
        fm.mtl.split_module(module)
    with pytest.warns(UserWarning, match=r"Own declares no shared parameters.*every parameter"):
        fm.mtl.split_module(module, task_names=["a", "b"])
    with pytest.raises(ValueError, match=r"`shared_names` has names that are no parameter"):
        fm.mtl.split_module(module, task_names=["a", "b"], shared_names=["trunk.w"])
    split = fm.mtl.split_module(module, task_names=["a", "b"],
                                shared_names=["trunk.weight", "trunk.bias"])
    params, buffers = fm.init(module, fm.random.key(0))
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "mean")
    step = fm.mtl.make_step(split, TASKS, opt, "mean")
    x, y = data()
    new, _ = step(state, (x, y), fm.random.key(1))
    # Reference: plain autograd. Mean of task gradients on the trunk, own task's on a head.
    reference = fm.load_into(module, params)
    losses = fm.mtl.task_losses(TASKS, reference(x), y)
    rows = [dict(zip(params, torch.autograd.grad(losses[t], list(reference.parameters()),
                                                 retain_graph=True), strict=True))
            for t in range(2)]
    for name, value in params.items():
        expected = (rows[0][name] + rows[1][name]) / (2 if name.startswith("trunk.") else 1)
        torch.testing.assert_close(new.params[name], value - 0.1 * expected)


def test_gramian_path_of_a_whole_model_split_equals_the_exact_path():
    module = Own()
    split = fm.mtl.split_module(module, task_names=["a", "b"],
                                shared_names=[n for n, _ in module.named_parameters()])
    params, buffers = fm.init(module, fm.random.key(0))
    opt, x_y = fm.optim.sgd(0.1), data()
    results = []
    for path in ("exact", "gramian"):
        state = fm.mtl.init_state(params, buffers, TASKS, opt, "mgda")
        results.append(fm.mtl.make_step(split, TASKS, opt, "mgda", path=path)(
            state, x_y, fm.random.key(1))[0].params)
    for name in params:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"path='representation' needs a model cut"):
        fm.mtl.make_step(split, TASKS, opt, "mgda", path="representation")
