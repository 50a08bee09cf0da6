"""Array backends: which array module (NumPy or CuPy) and which kernels run.

This module owns the choice of backend and is the only module that imports CuPy.
Everything else asks it for the array module of an array (`xp_of`) or converts to
NumPy for printing and saving (`to_numpy`).

Backends:
    "numpy"  plain NumPy everywhere (the reference kernels; easiest to read and debug)
    "numba"  NumPy arrays, Numba-compiled kernels where they exist (the default)
    "cupy"   CuPy arrays on a GPU (needs the optional `gpu` extra)

The backend is chosen explicitly with `set_backend(name)`, or once at import time from
the environment variable MINISSL_BACKEND. No other module reads the environment.
"""

import os


def _quiet_idle_threads():
    """Let idle threads of the OpenMP (Numba) and OpenBLAS pools sleep soon instead of spin,
    unless the user set these variables.

    Why (`python -m benchmarks.threads`, docs/results.md): both pools keep their threads
    spinning for a while after each parallel call. On 2 cores, alternating Numba kernels and
    BLAS GEMMs (every conv layer does) then ran up to 3x slower (LeNet training step: 82 ms
    spinning, 23 ms with these settings; a Numba GEMM right after a BLAS GEMM: 45 GFLOP/s
    while OpenBLAS's threads spin, 115 once they sleep at once).
    Sleeping at once has its own cost: waking a sleeping thread takes 50-70 microseconds on
    these machines, paid by every parallel Numba call that comes more than a moment after the
    last one (a batch-1 LeNet forward pass makes several; a compacted layer runs in 0.02-0.3
    ms). So libgomp's threads (Numba's "omp" layer) spin for GOMP_SPINCOUNT = 3000 turns
    first, about 0.1 ms, then sleep: the LeNet batch-1 pass went from 0.48-0.56 to 0.25 ms
    with the training steps unchanged within noise. A ten times longer spin was as good on
    those, but on AlexNet's compacted layers, where a Numba patch kernel and a BLAS product
    alternate, its spinning threads slowed BLAS down (benchmarks.threads, benchmarks.speedup
    --paper alexnet; docs/results.md).
    Both libraries read these when they start, so this runs before NumPy is imported; a
    program that imported NumPy before minissl keeps OpenBLAS's default.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


_quiet_idle_threads()

# Freed blocks up to this size stay in the C heap for reuse (see _keep_freed_memory).
KEEP_FREED_BYTES = 256 * 2 ** 20


def _keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS,
    unless the user tuned malloc (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) or turned
    this off with MINISSL_KEEP_FREED_MEMORY=0. Returns True when the setting took effect.

    Why (`python -m benchmarks.memory_reuse`, docs/results.md): every op returns a fresh
    array. By default glibc serves each large array from fresh pages (mmap) and hands them
    back on free, so every step pays a page fault per 4 KB touched; kept in the heap, the
    next step reuses the same pages. In that benchmark a ResNet-20 step at batch 128 went
    from 45,892 page faults to 1 and from 1222 to 1114 ms (on a busy machine), with the
    same peak memory (599 and 603 MB): the heap holds what was live at the peak, which is
    reused rather than added to.
    """
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    if os.environ.get("MINISSL_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, Windows, musl): nothing to do
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    ok = mallopt(m_mmap_threshold, KEEP_FREED_BYTES) or mallopt(m_mmap_threshold, 32 * 2 ** 20)
    return bool(ok and mallopt(m_trim_threshold, 4 * KEEP_FREED_BYTES))


KEEPS_FREED_MEMORY = _keep_freed_memory()

import numpy as np  # noqa: E402  (after the thread settings above)

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
