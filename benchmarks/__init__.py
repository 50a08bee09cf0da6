"""Speed and memory measurements: `python -m benchmarks.<name> --help`.

The process settings for long runs (minissl.process: idle OpenMP and OpenBLAS threads sleep,
the C heap keeps freed memory) are applied here, before any benchmark imports NumPy, so that
the measurements see what the experiments run with.
"""

from minissl import process

process.tune_for_training()
