"""Why minissl makes idle threads sleep: a LeNet training step and a Numba GEMM right after
a BLAS GEMM, each under three thread settings, each setting in its own child process.

    python -m benchmarks.threads
    python -m benchmarks.threads --help

Settings (both libraries read them at start-up, so each needs a fresh process):
  spinning        OMP_WAIT_POLICY=ACTIVE,  OPENBLAS_THREAD_TIMEOUT=28 (OpenBLAS's default)
  passive OpenMP  OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=28
  minissl default OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4  (minissl.backend)
Random inputs, no data needed. Prints median milliseconds per LeNet step (batch 64) and the
GFLOP/s of minissl's Numba GEMM (1024) when called right after a BLAS GEMM.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {
    "spinning": {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "28"},
    "passive OpenMP": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "28"},
    "minissl default": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"},
}


def worker(steps):
    """Child process: time LeNet steps and a GEMM after BLAS; print JSON."""
    import numpy as np

    from benchmarks.train_throughput import ours_step_function
    from minissl import kernels

    rng = np.random.default_rng(0)
    images = rng.random((64 * 8, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, len(images))
    step = ours_step_function("lenet")
    times = []
    for index in range(steps + 5):
        batch = slice(64 * (index % 8), 64 * (index % 8 + 1))
        start = time.perf_counter()
        step(images[batch], labels[batch])
        times.append(time.perf_counter() - start)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    kernels.gemm(a, a)  # compile
    after_blas = []
    for _ in range(10):
        a @ a
        start = time.perf_counter()
        kernels.gemm(a, a)
        after_blas.append(time.perf_counter() - start)
    print(json.dumps({"step_ms": 1e3 * float(np.median(times[5:])),
                      "gemm_after_blas_gflops": 2 * 1024 ** 3 / float(np.median(after_blas)) / 1e9}))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60,
                        help="timed LeNet steps per setting, after 5 warm-up steps (default 60)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.steps)
        return
    print(f"{'setting':<18}{'LeNet step ms':>15}{'Numba GEMM after BLAS, GFLOP/s':>33}")
    rows = []
    for name, variables in SETTINGS.items():
        done = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--worker", "--steps",
                               str(args.steps)], env={**os.environ, **variables},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} worker failed:\n{done.stderr[-2000:]}")
        row = {"setting": name, **variables, **json.loads(done.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{name:<18}{row['step_ms']:>15.1f}{row['gemm_after_blas_gflops']:>33.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
