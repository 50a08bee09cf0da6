import numpy as np
import pytest

import minissl
from minissl import backend


def test_set_backend_switches_and_rejects_unknown_names():
    previous = minissl.get_backend()
    try:
        minissl.set_backend("numpy")
        assert minissl.get_backend() == "numpy"
        with pytest.raises(ValueError, match="unknown backend 'torch'"):
            minissl.set_backend("torch")
    finally:
        minissl.set_backend(previous)


def test_numpy_arrays_belong_to_numpy():
    array = np.ones(3)
    assert backend.xp_of(array) is np
    assert backend.to_numpy(array) is array


def test_cupy_backend_without_cupy_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="gpu"):
        minissl.set_backend("cupy")
