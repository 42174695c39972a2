"""Every ``Example`` in funcmtl's docstrings runs as written and prints what it shows.

The examples assume the conventional imports (``import torch, funcmtl as fm``, ``nn``), as
the README does; everything else they use they define themselves.
"""

import doctest
import importlib
import pkgutil

import pytest
import torch
from torch import nn

import funcmtl as fm

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(fm.__path__, prefix="funcmtl.")
)


def _examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, globs={"fm": fm, "torch": torch, "nn": nn})
    return [t for t in tests if t.examples and t.name.startswith(module_name)]


CASES = [(name, t) for name in MODULES for t in _examples(name)]


@pytest.mark.parametrize("test", [t for _, t in CASES], ids=[t.name for _, t in CASES])
def test_docstring_example(test: doctest.DocTest) -> None:
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output: list[str] = []
    runner.run(test, out=output.append)
    assert runner.failures == 0, "".join(output)


def test_the_public_modules_have_examples():
    assert len(CASES) > 30
