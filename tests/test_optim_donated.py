"""The donated (fused, in-place) optimizer path equals the pure update + apply_updates."""

import pytest
import torch

import funcmtl as fm


def problem(members=None):
    g = torch.Generator().manual_seed(0)
    lead = () if members is None else (members,)
    params = {"w": torch.randn(*lead, 7, 5, generator=g), "b": torch.randn(*lead, 5, generator=g)}
    grads = [
        {k: torch.randn(v.shape, generator=g) * (1 + i % 3) for k, v in params.items()}
        for i in range(20)
    ]
    return params, grads


OPTIMIZERS = {
    "sgd": lambda: fm.optim.sgd(0.1),
    "sgd_momentum_wd": lambda: fm.optim.sgd(0.05, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda: fm.optim.sgd(0.05, momentum=0.8, nesterov=True),
    "adam": lambda: fm.optim.adam(1e-2),
    "adam_wd": lambda: fm.optim.adam(1e-2, b1=0.8, b2=0.99, weight_decay=1e-2),
    "adam_schedule": lambda: fm.optim.adam(fm.optim.cosine_decay_schedule(1e-2, 20)),
    "adamw": lambda: fm.optim.adamw(1e-2, weight_decay=0.1),
    "sgd_step_schedule": lambda: fm.optim.sgd(fm.optim.step_decay_schedule(0.1, 5, 0.5)),
}


@pytest.mark.parametrize("members", [None, 4])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_donated_step_equals_pure_step(name, members):
    opt = OPTIMIZERS[name]()
    assert opt.apply_donated is not None
    params, grads = problem(members)
    init = opt.init if members is None else torch.func.vmap(opt.init)
    pure_params, pure_state = params, init(params)
    donated_params = fm.tree.map(torch.clone, params)
    donated_state = fm.tree.map(torch.clone, pure_state)
    for g in grads:
        if members is None:
            updates, pure_state = opt.update(g, pure_state, pure_params)
        else:
            updates, pure_state = torch.func.vmap(opt.update)(g, pure_state, pure_params)
        pure_params = fm.optim.apply_updates(pure_params, updates)
        donated_params, donated_state = fm.optim.update_params(
            opt, fm.tree.map(torch.clone, g), donated_state, donated_params, donate=True
        )
    # Same math, different float32 operation order: agree to a few ulps after 20 steps.
    for a, b in zip(fm.tree.leaves(pure_params), fm.tree.leaves(donated_params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(fm.tree.leaves(pure_state), fm.tree.leaves(donated_state), strict=True):
        torch.testing.assert_close(a.to(b.dtype), b, rtol=1e-5, atol=1e-6)


def test_tensor_hyperparameters_have_no_fused_path_and_pure_is_used():
    opt = fm.optim.adam(torch.tensor(1e-2))
    assert opt.apply_donated is None
    params, grads = problem()
    state = opt.init(params)
    new, _ = fm.optim.update_params(opt, grads[0], state, params, donate=True)
    assert torch.equal(params["w"], problem()[0]["w"])  # the pure path left inputs alone
    updates, _ = opt.update(grads[0], state, params)
    assert torch.allclose(new["w"], params["w"] + updates["w"])


def test_chained_transforms_do_not_claim_a_fused_path():
    opt = fm.optim.chain(fm.optim.clip_by_global_norm(1.0), fm.optim.adam(1e-3))
    assert opt.apply_donated is None
