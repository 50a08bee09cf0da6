"""Process-wide settings for long runs: idle threads that sleep soon, and a C heap that keeps
freed memory. Importing minissl never applies them; the entry points (the experiments, the
demos, the benchmarks) call `tune_for_training()` first, and a program of yours may too.

This module imports nothing but the standard library, so that an entry point can call it
before NumPy loads OpenBLAS (which reads its settings once, when it loads).

Measured effects (`python -m benchmarks.threads` and `python -m benchmarks.memory_reuse`;
docs/performance.md):
- Both thread pools (libgomp under Numba, OpenBLAS under NumPy) keep idle threads spinning
  for a while after each parallel call. On 2 cores, alternating Numba kernels and BLAS GEMMs
  (every conv layer does) then ran up to 3x slower: a LeNet training step took 82 ms with
  spinning threads and 23 ms with these settings. libgomp's threads still spin about 0.1 ms
  (GOMP_SPINCOUNT = 3000) before they sleep, because waking a sleeping thread costs 50-70
  microseconds, paid by every small parallel call: a batch-1 LeNet forward pass went from
  0.48-0.56 ms (no spin) to 0.25 ms.
- glibc serves each large array from fresh pages and hands them back on free, so every step
  pays a page fault per 4 KB touched. Kept in the heap, the next step reuses the same pages:
  a ResNet-20 step at batch 128 went from 45,892 page faults to 1 and from 1222 to 1114 ms,
  with the same peak memory.
"""

import os
import sys
import warnings

# Environment variables read by libgomp (when Numba's OpenMP layer starts) and by OpenBLAS
# (when NumPy loads it). A value the user set is never overridden.
THREAD_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000",
                   "OPENBLAS_THREAD_TIMEOUT": "4"}
# Freed blocks up to this size stay in the C heap for reuse.
KEEP_FREED_BYTES = 256 * 2 ** 20


class LateSettingWarning(UserWarning):
    """A setting could not apply because the library that reads it was already loaded."""


def tune_for_training(keep_freed_memory=True):
    """Apply the thread settings (as environment defaults, which child processes inherit)
    and, with `keep_freed_memory`, glibc's malloc thresholds. Returns a dict of what applied:
    {"threads": {name: value}, "keeps_freed_memory": bool}.

    Warns once (LateSettingWarning) when NumPy was imported before this call: OpenBLAS has
    then read its own default, and only the libgomp settings still take effect.
    Set MINISSL_KEEP_FREED_MEMORY=0 to leave malloc alone.
    """
    applied = {}
    for name, value in THREAD_SETTINGS.items():
        applied[name] = os.environ.setdefault(name, value)
    if "numpy" in sys.modules:
        warnings.warn("minissl.process.tune_for_training: NumPy was imported first, so "
                      "OpenBLAS keeps its own idle-thread timeout (set "
                      "OPENBLAS_THREAD_TIMEOUT=4 before Python starts to apply it)",
                      LateSettingWarning, stacklevel=2)
    keeps = (keep_freed_memory and os.environ.get("MINISSL_KEEP_FREED_MEMORY", "1") != "0"
             and _keep_freed_memory())
    return {"threads": applied, "keeps_freed_memory": keeps}


def _keep_freed_memory():
    """Ask glibc's malloc to keep freed memory up to KEEP_FREED_BYTES instead of returning
    it to the OS, unless the user tuned malloc. True when the setting took effect."""
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, Windows, musl): nothing to do
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    ok = mallopt(m_mmap_threshold, KEEP_FREED_BYTES) or mallopt(m_mmap_threshold, 32 * 2 ** 20)
    return bool(ok and mallopt(m_trim_threshold, 4 * KEEP_FREED_BYTES))
