"""Importing minissl changes nothing; the process settings apply only when asked for (and say
when they come too late); grad mode belongs to each thread."""

import os
import subprocess
import sys
import threading

import pytest

import minissl


def run_python(code, **env_changes):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_importing_minissl_changes_no_environment_variable_and_loads_no_numpy():
    done = run_python("import os, sys; e = dict(os.environ); import minissl; "
                      "assert dict(os.environ) == e, 'environment changed'; "
                      "assert 'numpy' not in sys.modules, 'numpy loaded'; "
                      "minissl.models.lenet(); assert dict(os.environ) == e; print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_entry_points_apply_the_settings_before_numpy_and_keep_the_users():
    done = run_python("import os, sys, warnings; warnings.simplefilter('error'); "
                      "import demos; assert 'numpy' not in sys.modules; "
                      "print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'], "
                      "os.environ['OPENBLAS_THREAD_TIMEOUT'])", GOMP_SPINCOUNT="77")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["PASSIVE", "77", "4"]  # the user's own value is kept


def test_settings_after_numpy_warn_in_one_line():
    done = run_python("import numpy, warnings\n"
                      "from minissl import process\n"
                      "with warnings.catch_warnings(record=True) as caught:\n"
                      "    warnings.simplefilter('always')\n"
                      "    applied = process.tune_for_training(keep_freed_memory=False)\n"
                      "print(len(caught), caught[0].category.__name__, applied['threads'])")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("1 LateSettingWarning {'OMP_WAIT_POLICY': 'PASSIVE'")


def test_grad_mode_is_per_thread():
    seen = {}

    def other_thread():
        seen["other"] = minissl.is_grad_enabled()

    with minissl.no_grad():
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        seen["here"] = minissl.is_grad_enabled()
    assert seen == {"other": True, "here": False}
    assert minissl.is_grad_enabled()


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        minissl.nothing_here  # noqa: B018
