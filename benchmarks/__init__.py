"""Speed and memory measurements: `python -m benchmarks.<name> --help`.

minissl is imported here, before any benchmark imports NumPy, so that its thread settings
(minissl.backend: idle OpenMP and OpenBLAS threads sleep) apply to the measurements.
"""

import minissl  # noqa: F401
