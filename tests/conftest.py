"""Shared test setup: a fixed global seed per test, a one-thread fixture for the solvers, and
the device of the device-agnostic tests (``FUNCMTL_TEST_DEVICE``, default ``cpu``; e.g.
``FUNCMTL_TEST_DEVICE=cuda python -m pytest tests/test_fit.py`` on a GPU machine)."""

import os

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


@pytest.fixture(scope="session")
def device() -> torch.device:
    """``torch.device(FUNCMTL_TEST_DEVICE)``; skips when that device is not available."""
    name = os.environ.get("FUNCMTL_TEST_DEVICE", "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"FUNCMTL_TEST_DEVICE={name} but CUDA is not available")
    return device


@pytest.fixture
def ctrl_c_at(monkeypatch):
    """``with ctrl_c_at(step):`` a ``funcmtl train`` inside the block gets a KeyboardInterrupt
    (what Ctrl-C raises in one process) once step ``step`` is complete."""
    import contextlib

    from funcmtl.experiment import _loop

    original = _loop._Progress.update

    @contextlib.contextmanager
    def interrupt(step: int):
        def update(self, done, loss):
            if done == step:
                raise KeyboardInterrupt
            original(self, done, loss)

        monkeypatch.setattr(_loop._Progress, "update", update)
        try:
            yield
        finally:
            monkeypatch.setattr(_loop._Progress, "update", original)

    return interrupt
