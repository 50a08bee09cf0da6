"""Chunks of a convolution's images run side by side, one worker thread per core.

A convolution on the CPU works through its batch in chunks of images (minissl.ops.conv):
unfold the chunk's patches (a Numba kernel), multiply (an OpenBLAS GEMM), lay the result
out. Run one chunk at a time, each step is split over all cores, and the cores hop between
two thread pools (Numba's and OpenBLAS's) several times per chunk; on 2 cores that hopping
cost about as much as the unfolding itself (the ConvNet's conv2 forward at batch 128: 61 ms
one chunk at a time, 35 ms with chunks side by side; docs/performance.md).

So on the Numba backend each worker thread takes whole chunks: its unfolding runs on the
worker alone (the kernels' `serial=True`, compiled without the GIL) and its GEMMs call
OpenBLAS limited to one thread for that worker (`openblas_set_num_threads_local`). The
chunks write disjoint slices of the output, and anything summed over chunks is summed in
chunk order afterwards, so results do not depend on which worker ran what.

Where that OpenBLAS function is missing (another BLAS, such as Apple's Accelerate, or an
OpenBLAS older than 0.3.27), or only one thread is allowed (NUMBA_NUM_THREADS=1),
`chunk_workers()` returns None and the convolution runs one chunk at a time as before.
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# Names under which an OpenBLAS build exports "threads for calls from this thread".
_LOCAL_THREADS_SYMBOLS = ("openblas_set_num_threads_local",
                          "scipy_openblas_set_num_threads_local64_")

_pool = {"checked": False, "executor": None, "threads": 1, "enabled": True,
         "lock": threading.Lock()}


def _forget_pool_after_fork():
    """A forked child has none of its parent's threads: it starts its own pool if needed
    (the parent's executor would wait forever on workers that do not exist there)."""
    _pool.update(checked=False, executor=None, threads=1, lock=threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _openblas_local_threads():
    """OpenBLAS's per-thread thread-count setter used by NumPy, or None.

    dlsym on NumPy's extension module also searches the libraries it links to, which is
    where the BLAS NumPy calls lives.
    """
    core = getattr(np, "_core", None) or np.core  # NumPy 2 / NumPy 1
    try:
        library = ctypes.CDLL(core._multiarray_umath.__file__)
    except (OSError, AttributeError):
        return None
    for name in _LOCAL_THREADS_SYMBOLS:
        setter = getattr(library, name, None)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            return setter
    return None


def chunk_workers():
    """The shared ThreadPoolExecutor (one worker per Numba thread, each with single-threaded
    BLAS), created on first use; None when chunks cannot run side by side (module doc)."""
    with _pool["lock"]:
        if not _pool["checked"]:
            _pool["checked"] = True
            setter = _openblas_local_threads()
            threads = numba.get_num_threads()
            if setter is not None and threads > 1:
                _pool["threads"] = threads
                _pool["executor"] = ThreadPoolExecutor(
                    threads, thread_name_prefix="minissl-chunk",
                    initializer=lambda: setter(1))
        return _pool["executor"]


def set_chunk_workers(enabled):
    """Turn chunks side by side on (the default where possible) or off: off, every chunk runs
    one at a time on this thread (`python -m benchmarks.conv_chunks` compares the two; a
    program that runs minissl from several threads of its own may want it off)."""
    _pool["enabled"] = bool(enabled)


def worker_count():
    """How many chunks run at once: the workers' count, or 1 without workers."""
    if not _pool["enabled"] or chunk_workers() is None:
        return 1
    return _pool["threads"]


def run_chunks(work, chunks, side_by_side):
    """[work(start, stop, serial) for each (start, stop) chunk], in chunk order.

    With side_by_side (and workers available) the chunks run on the workers with
    serial=True; otherwise one after another on this thread with serial=False (each kernel
    then uses every core itself). An exception in a chunk is raised here.
    """
    side_by_side = side_by_side and _pool["enabled"] and len(chunks) > 1
    executor = chunk_workers() if side_by_side else None
    if executor is None:
        return [work(start, stop, False) for start, stop in chunks]
    futures = [executor.submit(work, start, stop, True) for start, stop in chunks]
    try:
        return [future.result() for future in futures]
    except BaseException:  # an error in a chunk, or Ctrl-C: drop the chunks not yet started
        for future in futures:
            future.cancel()
        raise
