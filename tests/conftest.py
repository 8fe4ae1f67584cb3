"""Shared test setup: every test runs torch on one CPU thread.

The models in the tests are tiny; on a small or busy 2-core machine two threads that hand off every small op
cost far more than the arithmetic (measured 10-50x slower), and one thread also keeps results bit-identical
from run to run.
"""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
