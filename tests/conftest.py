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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a random-init ``tiny_cnn`` model at 64 px saved as a synthfm checkpoint (seed 0).

    Its masks are meaningless; tests use it for plumbing (shapes, files, error paths).
    """
    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model

    path = tmp_path_factory.mktemp("tiny_model") / "tiny.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, build_model("tiny_cnn", image_size=64))
    return path
