"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models train fastest on one thread (and a busy machine makes two much slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
