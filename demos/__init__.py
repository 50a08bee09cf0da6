"""Runnable experiments of the paper, one file each: python -m demos.<name> --help.

minissl is imported here, before any demo imports NumPy, so that its thread settings
(minissl.backend: idle OpenMP and OpenBLAS threads sleep) are in force.
"""

import minissl  # noqa: F401
