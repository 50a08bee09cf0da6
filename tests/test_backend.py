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


def test_import_does_not_load_matplotlib_or_set_its_backend(tmp_path):
    """A notebook keeps its own matplotlib backend: importing minissl must not set one, and
    drawing a figure must not change it. (SciPy is imported by Numba itself, so minissl
    imports scipy.sparse only where timing uses it.)"""
    import subprocess
    import sys

    script = ("import sys, minissl\n"
              "assert 'matplotlib' not in sys.modules, 'matplotlib'\n"
              "import matplotlib\n"
              "matplotlib.use('svg')\n"
              "minissl.plots.depth_figure([], [{'name': 'p', 'layers': 20, 'error': 0.1}],"
              " sys.argv[1])\n"
              "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "depth.png")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "depth.png").stat().st_size > 0


def test_gpu_check_fails_with_one_line_without_a_gpu(tmp_path):
    """scripts/gpu_check.sh must not report success (0, "5 skipped") where it cannot run."""
    import os
    import subprocess

    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU with CuPy is here: the script would run for real")
    except Exception:  # no CuPy or no GPU: the case under test
        pass
    root = os.path.dirname(os.path.dirname(__file__))
    done = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "out")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "gpu_check: needs CuPy and an NVIDIA GPU, found none" in done.stderr
    assert "passed" not in done.stdout
