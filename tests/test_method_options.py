"""Typed method options: read from the factories' signatures and docstrings, parsed from the
command line by type, shown by ``funcmtl methods NAME``."""

from __future__ import annotations

import pytest
import torch

import funcmtl as fm
from funcmtl_cli.main import main

REGISTRIES = [(fm.aggregators, n) for n in fm.aggregators.names()] + [
    (fm.weightings, n) for n in fm.weightings.names()
]


@pytest.mark.parametrize("registry, name", REGISTRIES, ids=lambda x: getattr(x, "__name__", x))
def test_every_default_written_as_text_parses_back_to_itself(registry, name) -> None:
    specs = registry.specs(name)
    assert [o.name for o in specs] == list(registry.options(name))
    texts = {o.name: str(o.default) for o in specs}
    assert registry.parse(name, texts) == {o.name: o.default for o in specs}
    for option in specs:
        assert option.type, f"{name}.{option.name} has no annotation"
        assert option.help, f"{name}.{option.name} has no Args entry in the docstring"


def test_values_are_parsed_by_type_and_wrong_ones_name_the_expected_type() -> None:
    assert fm.aggregators.parse("cagrad", {"c": "1", "rescale": "2"}) == {"c": 1.0, "rescale": 2}
    assert isinstance(fm.aggregators.parse("cagrad", {"c": "1"})["c"], float)
    assert fm.aggregators.parse("imtl_g", {"rtol": "none"}) == {"rtol": None}
    pref = fm.aggregators.parse("upgrad", {"pref_vector": "(1, 2, 1)"})["pref_vector"]
    assert torch.equal(pref, torch.tensor([1.0, 2.0, 1.0]))
    assert fm.aggregators.specs("upgrad")[0].type == "Tensor | None"
    cases = [
        ("cagrad", {"c": "big"}, r"aggregator 'cagrad' option `c` must be a number; got 'big'"),
        ("cagrad", {"rescale": "1.5"}, r"`rescale` must be an integer; got '1.5'"),
        ("mgda", {"normalization": "l1"}, r"must be one of 'none', 'l2'; got 'l1'"),
        ("cagrad", {"radius": "1"},
         r"has no option 'radius'; its options are: c \(a number\), rescale \(an integer\)"),
    ]
    for name, texts, message in cases:
        with pytest.raises(ValueError, match=message):
            fm.aggregators.parse(name, texts)


def test_methods_name_shows_the_options_types_defaults_and_paper(capsys) -> None:
    assert main(["methods", "cagrad"]) == 0
    out = capsys.readouterr().out
    assert "cagrad (aggregator)" in out and "arxiv.org/abs/2110.14048" in out
    assert "c: a number (type float), default 0.5" in out
    assert "rescale: an integer (type int), default 1" in out
    assert "--method-options c=0.5 rescale=1" in out
    for _, name in REGISTRIES:
        assert main(["methods", name]) == 0
        assert capsys.readouterr().out.startswith(name)


def test_bad_method_options_exit_2_in_one_line(capsys) -> None:
    assert main(["train", "--method", "cagrad", "--method-options", "c=abc", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "funcmtl: error: aggregator 'cagrad' option `c` must be a number; got 'abc'."
    assert main(["methods", "pcgard"]) == 2
    assert "unknown method 'pcgard'" in capsys.readouterr().err


def test_weighting_options_reach_the_weighting_next_to_an_aggregator() -> None:
    from funcmtl.experiment import TrainConfig
    from funcmtl.experiment._build import resolve_method

    aggregator, weighting = resolve_method(TrainConfig(
        method="pcgrad", weighting="dwa", weighting_options=("temperature=3",)))
    assert repr(weighting) == "dwa(temperature=3.0, period=100)" and aggregator.name == "pcgrad"
    with pytest.raises(ValueError, match="loss weighting 'dwa' has no option 'tau'"):
        resolve_method(TrainConfig(method="pcgrad", weighting="dwa", weighting_options=("tau=1",)))
