"""Array backends: which array module (NumPy or CuPy) and which kernels run.

This module owns the choice of backend and is the only module that imports CuPy.
Everything else asks it for the array module of an array (`xp_of`) or converts to
NumPy for printing and saving (`to_numpy`).

Backends:
    "numpy"  plain NumPy everywhere (the reference kernels; easiest to read and debug)
    "numba"  NumPy arrays, Numba-compiled kernels where they exist (the default)
    "cupy"   CuPy arrays on a GPU (needs the optional `gpu` extra)

The backend is chosen explicitly with `set_backend(name)`, or once at import time from
the environment variable MINISSL_BACKEND. Thread and malloc settings for long runs are
not chosen here: they are the process's business (`minissl.process.tune_for_training`).
"""

import os

import numpy as np

BACKENDS = ("numpy", "numba", "cupy")

_state = {"name": "numba"}


def _import_cupy():
    """Return the cupy module, or raise ImportError with an install hint."""
    try:
        import cupy
    except ImportError as error:
        raise ImportError(
            "the 'cupy' backend needs CuPy: pip install -e '.[gpu]' (and a CUDA GPU)"
        ) from error
    return cupy


def set_backend(name):
    """Select the backend by name: "numpy", "numba" or "cupy".

    Raises ValueError for an unknown name and ImportError when "cupy" is asked for
    but CuPy is not installed. Tensors created earlier keep their arrays.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "cupy":
        _import_cupy()
    _state["name"] = name


def get_backend():
    """Return the name of the current backend."""
    return _state["name"]


def array_module():
    """Return the array module (numpy or cupy) that new arrays are created with."""
    if _state["name"] == "cupy":
        return _import_cupy()
    return np


def xp_of(array):
    """Return the array module (numpy or cupy) that `array` belongs to."""
    if type(array).__module__.startswith("cupy"):
        return _import_cupy()
    return np


def synchronize():
    """Wait until the GPU has finished queued work (a no-op unless the backend is "cupy").

    GPU kernels run asynchronously; a timer must call this before reading the clock.
    """
    if _state["name"] == "cupy":
        _import_cupy().cuda.get_current_stream().synchronize()


def to_numpy(array):
    """Return `array` as a NumPy array (copies from the GPU when needed)."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)


set_backend(os.environ.get("MINISSL_BACKEND", "numba"))
