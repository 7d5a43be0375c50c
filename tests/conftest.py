"""Fixtures shared by several test files."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run torch with one thread: the 2-core test machines also run pytest-xdist workers, and
    oversubscribed OpenMP threads stall training-loop tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
