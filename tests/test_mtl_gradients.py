"""Per-task gradients and the MTL step against plain autograd on the nn.Module."""


import pytest
import torch
from torch import nn

import funcmtl as fm

TASKS = [
    fm.mtl.Task("digit", "classification", 4),
    fm.mtl.Task("value", "regression", 1),
    fm.mtl.Task("flag", "binary", 1),
]


def setup(seed=0, n=48, dropout=0.0):
    module = fm.mtl.hard_sharing_mlp(6, (24, 16), TASKS, dropout=dropout)
    params, buffers = fm.init(module, fm.random.key(seed))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    targets = {
        "digit": torch.randint(0, 4, (n,), generator=g),
        "value": torch.randn(n, generator=g),
        "flag": torch.randint(0, 2, (n,), generator=g).float(),
    }
    return module, params, buffers, (x, targets)


def autograd_rows(module, params, batch):
    """Each task's gradient wrt every parameter by separate autograd.grad calls (reference)."""
    reference = fm.load_into(module, params)
    outputs = reference(batch[0])
    losses = fm.mtl.task_losses(TASKS, outputs, batch[1])
    names = [n for n, _ in reference.named_parameters()]
    rows = []
    for t in range(len(TASKS)):
        grads = torch.autograd.grad(
            losses[t], list(reference.parameters()), retain_graph=True, allow_unused=True
        )
        rows.append({
            n: torch.zeros_like(p) if g is None else g
            for n, p, g in zip(names, reference.parameters(), grads, strict=True)
        })
    return losses.detach(), rows


def close(a, b, rel=1e-5):
    return (a - b).abs().max() <= rel * max(1.0, float(b.abs().max()))


def test_split_jacobian_equals_separate_autograd_passes():
    module, params, buffers, batch = setup()
    split = fm.mtl.split_module(module)
    grads = fm.mtl.task_gradients(split, TASKS, params, buffers, batch, key=None)
    jacobian = fm.mtl.shared_jacobian(grads)
    losses, rows = autograd_rows(module, params, batch)
    assert torch.allclose(grads.losses, losses, atol=1e-6)
    for name in split.shared_names:
        for t in range(len(TASKS)):
            assert close(jacobian[name][t], rows[t][name])
    for t, task in enumerate(TASKS):
        for name, g in grads.head_grads[t].items():
            assert close(g, rows[t][name])
            assert name in split.task_names[task.name]


def test_generic_task_jacobian_equals_separate_autograd_passes():
    module, params, _, batch = setup(seed=1)
    apply, _, _ = fm.functional(module)
    shared = [n for n in params if n.startswith("shared.")]

    def losses_fn(p):
        return fm.mtl.task_losses(TASKS, apply(p, {}, batch[0])[0], batch[1])

    losses, jacobian, other = fm.mtl.task_jacobian(losses_fn, params, shared=shared,
                                                     task_chunk_size=2)
    _, rows = autograd_rows(module, params, batch)
    for name in shared:
        assert jacobian[name].shape == (3, *params[name].shape)
        for t in range(3):
            assert close(jacobian[name][t], rows[t][name])
    for name, g in other.items():  # heads: their own task's gradient
        assert close(g, sum(rows[t][name] for t in range(3)))
    expected = r"`shared` must name entries of `params`; unknown \['nope'\]"
    with pytest.raises(ValueError, match=expected):
        fm.mtl.task_jacobian(losses_fn, params, shared=["nope"])


def test_chunked_gramian_equals_the_gramian_of_the_exact_jacobian():
    module, params, buffers, batch = setup(seed=2)
    split = fm.mtl.split_module(module)
    grads = fm.mtl.task_gradients(split, TASKS, params, buffers, batch, key=None)
    jacobian = fm.mtl.shared_jacobian(grads)
    flat = torch.cat([jacobian[n].reshape(3, -1) for n in split.shared_names], dim=1).double()
    shared = {n: params[n] for n in split.shared_names}
    gram = fm.mtl.chunked_gramian(grads.encode, shared, grads.representation_grads)
    assert torch.allclose(gram.double(), flat @ flat.T, rtol=1e-5, atol=1e-7)
    for count in (1, 2, 3):
        chunks = fm.mtl.parameter_chunks(shared, count)
        assert sum(chunks, []) == list(shared)  # contiguous, in order, covering
        assert len(chunks) == min(count, 2)  # two Linear modules: never split a module
        chunked = fm.mtl.chunked_gramian(
            grads.encode, shared, grads.representation_grads, chunks=chunks
        )
        assert torch.allclose(chunked.double(), flat @ flat.T, rtol=1e-5, atol=1e-7)


def test_representation_gradients_equal_autograd_wrt_the_representation():
    module, params, buffers, batch = setup(seed=3)
    split = fm.mtl.split_module(module)
    grads = fm.mtl.task_gradients(split, TASKS, params, buffers, batch, key=None)
    reference = fm.load_into(module, params)
    z = reference.shared(batch[0])
    outputs = reference.tasks(z, batch[0])
    losses = fm.mtl.task_losses(TASKS, outputs, batch[1])
    for t in range(3):
        (dz,) = torch.autograd.grad(losses[t], z, retain_graph=True)
        assert close(fm.mtl.representation_rows(grads)[t], dz)


# Every head one Linear with one output: the representation gradients come in factored form.
SCALAR_TASKS = [fm.mtl.Task(f"b{t}", "binary", 1) for t in range(3)] + [
    fm.mtl.Task(f"r{t}", "regression", 1) for t in range(2)
]


class _OpaqueHead(nn.Module):
    """The same function as funcmtl's one-Linear head, in a class the split does not know."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, z, x):
        del x
        return self.linear(z).squeeze(-1)


def _scalar_setup(opaque: bool):
    """The model (one-Linear heads, or the same heads as `_OpaqueHead`s with the same
    values), its params and buffers, and a batch."""
    torch.manual_seed(11)
    x = torch.randn(40, 6)
    targets = {t.name: (torch.rand(40) > 0.5).float() if t.kind == "binary" else torch.randn(40)
               for t in SCALAR_TASKS}
    trunk = nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU())
    module = fm.mtl.HardSharing(trunk, {t.name: fm.mtl.output_head(16, t) for t in SCALAR_TASKS})
    params, buffers = fm.init(module, fm.random.key(3))
    if opaque:
        for t in SCALAR_TASKS:
            module.tasks.heads[t.name] = _OpaqueHead(16)
        params = {n.replace(".net.0.", ".linear."): v for n, v in params.items()}
    return module, params, buffers, (x, targets)


def test_factored_representation_gradients_equal_autograd():
    module, params, buffers, batch = _scalar_setup(opaque=False)
    split = fm.mtl.split_module(module)
    grads = fm.mtl.task_gradients(split, SCALAR_TASKS, params, buffers, batch, key=None)
    assert grads.row_factors is not None and grads.representation_grads is None
    reference = fm.load_into(module, params)
    z = reference.shared(batch[0])
    losses = fm.mtl.task_losses(SCALAR_TASKS, reference.tasks(z, batch[0]), batch[1])
    rows = torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0]
                        for t in range(len(SCALAR_TASKS))]).double()
    assert close(fm.mtl.representation_rows(grads), rows)
    flat = rows.reshape(len(SCALAR_TASKS), -1)
    assert close(fm.mtl.factored_gramian(grads.row_factors).double(), flat @ flat.T)
    w = torch.randn(len(SCALAR_TASKS), dtype=torch.float64)
    combined = fm.mtl.factored_combine(w.float(), grads.row_factors).double()
    assert close(combined, torch.einsum("t,tbd->bd", w, rows))


@pytest.mark.parametrize("aggregator", ["pcgrad", "upgrad", "mgda", "nash_mtl"])
def test_factored_representation_path_equals_the_materialised_one(aggregator):
    results = []
    for opaque in (False, True):  # one-Linear heads (factored) vs the same heads, opaque
        module, params, buffers, batch = _scalar_setup(opaque)
        split = fm.mtl.split_module(module)
        assert bool(split.affine_heads) is not opaque
        opt = fm.optim.sgd(0.05)
        state = fm.mtl.init_state(params, buffers, SCALAR_TASKS, opt, aggregator)
        step = fm.mtl.make_step(split, SCALAR_TASKS, opt, aggregator, path="representation")
        for s in range(3):
            state, metrics = step(state, batch, fm.random.fold_in(fm.random.key(9), s))
        results.append((list(state.params.values()), metrics["cosine"]))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        assert close(a, b, rel=1e-4)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)


@pytest.mark.parametrize("path", ["exact", "gramian", "representation"])
def test_mean_aggregator_step_is_sgd_on_mean_shared_and_own_head_gradients(path):
    module, params, buffers, batch = setup(seed=4)
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "mean")
    step = fm.mtl.make_step(fm.mtl.split_module(module), TASKS, opt, "mean", path=path)
    new, metrics = step(state, batch, fm.random.key(0))
    losses, rows = autograd_rows(module, params, batch)
    for name, value in params.items():
        if name.startswith("shared."):
            expected_grad = sum(rows[t][name] for t in range(3)) / 3
        else:
            expected_grad = sum(rows[t][name] for t in range(3))  # only its own task's
        assert close(new.params[name], value - 0.1 * expected_grad)
    assert torch.allclose(metrics["losses"], losses, atol=1e-6)
    assert metrics["cosine"].shape == (3, 3)
    assert torch.allclose(metrics["cosine"].diagonal(), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("aggregator", ["pcgrad", "upgrad", "mgda", "cagrad", "imtl_g"])
def test_gramian_path_equals_exact_path(aggregator):
    module, params, buffers, batch = setup(seed=5)
    split = fm.mtl.split_module(module)
    opt = fm.optim.sgd(0.05)
    results = []
    for path in ("exact", "gramian"):
        state = fm.mtl.init_state(params, buffers, TASKS, opt, aggregator)
        step = fm.mtl.make_step(split, TASKS, opt, aggregator, path=path)
        for s in range(3):
            state, _ = step(state, batch, fm.random.fold_in(fm.random.key(9), s))
        results.append(state.params)
    for name in params:
        assert close(results[0][name], results[1][name], rel=1e-4)


def test_geometric_mean_weighting_gives_the_gradient_of_the_geometric_mean():
    module, params, buffers, batch = setup(seed=6)
    opt = fm.optim.sgd(1.0)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "sum", "geometric_mean")
    step = fm.mtl.make_step(
        fm.mtl.split_module(module), TASKS, opt, "sum", "geometric_mean", path="exact"
    )
    new, _ = step(state, batch, fm.random.key(0))
    reference = fm.load_into(module, params)
    losses = fm.mtl.task_losses(TASKS, reference(batch[0]), batch[1])
    losses.prod().pow(1 / 3).backward()
    for name, p in reference.named_parameters():
        if name.startswith("shared."):
            assert close(params[name] - new.params[name], p.grad)


def test_k_mtl_models_with_pcgrad_in_one_vmapped_pass_equal_one_by_one():
    module, _, buffers, batch = setup(seed=7, dropout=0.2)
    split = fm.mtl.split_module(module)
    opt = fm.optim.adam(1e-2)
    keys = fm.random.split(fm.random.key(3), 4)
    solo_states = [
        fm.mtl.init_state(fm.init(module, k)[0], buffers, TASKS, opt, "pcgrad") for k in keys
    ]
    stacked = fm.tree.stack(solo_states)
    step = fm.mtl.make_step(split, TASKS, opt, "pcgrad")
    vstep = torch.func.vmap(step, in_dims=(0, None, 0), randomness="different")
    for s in range(10):
        step_keys = torch.stack([fm.random.fold_in(k, s) for k in keys])
        stacked, metrics = vstep(stacked, batch, step_keys)
        solo_states = [step(st, batch, k)[0] for st, k in zip(solo_states, step_keys, strict=True)]
    assert metrics["cosine"].shape == (4, 3, 3)
    for k, solo in enumerate(solo_states):
        member = fm.ensemble.member(stacked, k)
        for a, b in zip(fm.tree.leaves(member.params), fm.tree.leaves(solo.params), strict=True):
            assert (a - b).abs().max() <= 1e-5
    w = stacked.params["shared.0.weight"]
    assert not torch.allclose(w[0], w[1])


def test_bad_mtl_configuration_is_rejected_clearly():
    module, params, buffers, _ = setup()
    split = fm.mtl.split_module(module)
    opt = fm.optim.sgd(0.1)
    with pytest.raises(ValueError, match=r"`path` must be one of .*; got 'fast'"):
        fm.mtl.make_step(split, TASKS, opt, path="fast")
    with pytest.raises(ValueError, match="path='gramian' needs an aggregator"):
        fm.mtl.make_step(split, TASKS, opt, "graddrop", path="gramian")
    with pytest.raises(ValueError, match=r"no head for \['other'\]"):
        fm.mtl.make_step(split, [*TASKS, fm.mtl.Task("other", "binary", 1)], opt)
    with pytest.raises(ValueError, match="needs the task names"):
        fm.mtl.split_module(nn.Linear(2, 2))


def _whole_model_reference(module, params, batch, shared_names):
    """Expected mean-aggregator gradients: mean of task grads on shared, own task's elsewhere."""
    losses, rows = autograd_rows_for(module, params, batch)
    expected = {}
    for name in params:
        total = sum(rows[t][name] for t in range(len(rows)))
        expected[name] = total / len(rows) if name in shared_names else total
    return expected


def autograd_rows_for(module, params, batch):
    reference = fm.load_into(module, params)
    losses = fm.mtl.task_losses(TASKS, reference(batch[0]), batch[1])
    names = [n for n, _ in reference.named_parameters()]
    rows = []
    for t in range(len(TASKS)):
        grads = torch.autograd.grad(
            losses[t], list(reference.parameters()), retain_graph=True, allow_unused=True
        )
        rows.append({n: torch.zeros_like(p) if g is None else g
                     for n, p, g in zip(names, reference.parameters(), grads, strict=True)})
    return losses, rows


@pytest.mark.parametrize("architecture", ["cross_stitch", "soft_sharing", "ple"])
def test_any_module_returning_a_task_dict_trains_through_a_whole_model_split(architecture):
    build = {
        "cross_stitch": lambda: fm.mtl.cross_stitch_mlp(6, (12, 8), TASKS),
        "soft_sharing": lambda: fm.mtl.soft_sharing_mlp(6, (12, 8), TASKS),
        "ple": lambda: fm.mtl.PLE(6, 2, 1, (8,), TASKS, num_levels=2),
    }[architecture]
    module = build()
    params, buffers = fm.init(module, fm.random.key(1))
    _, _, _, batch = setup(seed=8)
    split = fm.mtl.split_module(module)
    shared_names = set(module.shared_parameter_names())
    assert set(split.encoder_task_names) == set(params) - shared_names
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "mean")
    new, metrics = fm.mtl.make_step(split, TASKS, opt, "mean")(state, batch, fm.random.key(0))
    expected = _whole_model_reference(module, params, batch, shared_names)
    for name, value in params.items():
        assert close(new.params[name], value - 0.1 * expected[name]), name
    assert torch.isfinite(metrics["cosine"]).all()
    with pytest.raises(ValueError, match="supports path='exact'"):
        fm.mtl.make_step(split, TASKS, opt, "mean", path="representation")


def test_regularizer_gradient_is_added_outside_the_aggregation():
    module = fm.mtl.soft_sharing_mlp(6, (12, 8), TASKS)
    params, buffers = fm.init(module, fm.random.key(2))
    _, _, _, batch = setup(seed=9)
    split = fm.mtl.split_module(module)
    opt = fm.optim.sgd(0.1)
    state = fm.mtl.init_state(params, buffers, TASKS, opt, "pcgrad")
    plain = fm.mtl.make_step(split, TASKS, opt, "pcgrad")(state, batch, fm.random.key(0))[0]
    penalty = lambda p: 0.5 * module.coupling_penalty(p)  # noqa: E731
    coupled = fm.mtl.make_step(split, TASKS, opt, "pcgrad", regularizer=penalty)(
        state, batch, fm.random.key(0)
    )[0]
    penalty_grads = torch.func.grad(penalty)(params)
    for name in params:
        assert close(coupled.params[name], plain.params[name] - 0.1 * penalty_grads[name])
    assert any(penalty_grads[n].abs().sum() > 0 for n in params)
