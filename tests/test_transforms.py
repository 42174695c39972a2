"""What every method shares: a name and a repr with its options, one init signature, one
EmptyState (torchjd's aggregators print as ``UPGrad(pref_vector=None, ...)``; ours as the
call that builds them)."""

from __future__ import annotations

import pytest
import torch

import funcmtl as fm
from funcmtl import aggregators, optim, weightings

REGISTRIES = [(aggregators, n) for n in aggregators.names()] + [
    (weightings, n) for n in weightings.names()
]


@pytest.mark.parametrize("registry, name", REGISTRIES, ids=lambda x: getattr(x, "__name__", x))
def test_a_method_prints_as_the_call_that_builds_it(registry, name) -> None:
    method = registry.get(name)
    defaults = ", ".join(f"{k}={v!r}" for k, v in registry.options(name).items())
    assert repr(method) == f"{name}({defaults})"
    namespace = {name: getattr(registry, name) for name in registry.names()}
    assert repr(eval(repr(method), namespace)) == repr(method)  # noqa: S307 — our own reprs
    assert method.name == name


def test_options_given_show_in_the_repr_and_a_custom_method_says_so() -> None:
    assert repr(aggregators.get("cagrad", c=0.4)) == "cagrad(c=0.4, rescale=1)"
    assert repr(weightings.dwa(temperature=3.0)) == "dwa(temperature=3.0, period=100)"
    upgrad = aggregators.upgrad(pref_vector=torch.tensor([1.0, 2.0, 1.0]))
    assert repr(upgrad) == "upgrad(pref_vector=tensor([1.0, 2.0, 1.0]), reg_eps=0.0)"
    rebuilt = eval(repr(upgrad), {"upgrad": aggregators.upgrad, "tensor": torch.tensor})  # noqa: S307
    assert repr(rebuilt) == repr(upgrad)
    custom = aggregators.Aggregator(init=lambda n: None, update=lambda g, s, key=None: (g, s))
    assert repr(custom) == "Aggregator(<custom>)"


@pytest.mark.parametrize("registry, name", REGISTRIES, ids=lambda x: getattr(x, "__name__", x))
def test_one_init_signature_for_aggregators_and_weightings(registry, name) -> None:
    method = registry.get(name)
    state = method.init(3, dtype=torch.float64, device="cpu")
    for leaf in fm.tree.leaves(state):
        if leaf.is_floating_point():
            assert leaf.dtype == torch.float64, name
    with pytest.raises(ValueError, match="`dtype` must be a floating torch dtype"):
        method.init(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="`num_tasks` must be a positive integer; got 0"):
        method.init(0)


def test_one_empty_state() -> None:
    stateless = [aggregators.pcgrad().init(2), weightings.equal().init(2),
                 optim.scale(0.5).init({})]
    assert len({type(state) for state in stateless}) == 1
