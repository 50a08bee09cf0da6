"""Shared fixtures: a local RNG and an environment with no MNIST anywhere."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def no_mnist_anywhere(monkeypatch, tmp_path):
    """Unset MINISSL_DATA and point HOME at an empty folder, so nothing is found or cached."""
    monkeypatch.delenv("MINISSL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path
