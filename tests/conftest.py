"""Shared test setup: a fixed global seed per test and a one-thread fixture for the solvers."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    """Tests that use torch's generator (random inputs) see the same numbers whatever ran
    before them."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """The QP solvers make many tiny LAPACK calls; on a busy 2-core machine MKL's thread team
    makes each ~10 ms instead of µs (the numbers do not change). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
