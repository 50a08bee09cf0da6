"""How long idle threads should spin: training steps, inference passes and a Numba GEMM right
after a BLAS GEMM, under several thread settings, each setting in its own child process.

    python -m benchmarks.threads
    python -m benchmarks.threads --help

Settings (both libraries read them at start-up, so each needs a fresh process):
  spinning        OMP_WAIT_POLICY=ACTIVE,  OPENBLAS_THREAD_TIMEOUT=28 (OpenBLAS's default),
                  GOMP_SPINCOUNT=INFINITE
  passive OpenMP  OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=28, GOMP_SPINCOUNT=0
  no spin         OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4  (minissl before 2026-11-28)
  short spin      the same, GOMP_SPINCOUNT=3000 (libgomp's threads spin about 0.1 ms, then
                  sleep: minissl.backend's default now)
  longer spin     the same, GOMP_SPINCOUNT=30000 (0.2-1 ms)
Random inputs, no data needed. Prints median milliseconds per training step (LeNet, batch 64;
the CIFAR ConvNet, batch 128), per LeNet inference pass (eval mode, batch 1 and 100), and the
GFLOP/s of minissl's Numba GEMM (1024) when called right after a BLAS GEMM.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from minissl.atomic import atomic_file

SETTINGS = {
    # each setting names GOMP_SPINCOUNT: minissl (imported by this parent process) sets it
    # in the environment the children inherit, and libgomp lets it override the wait policy
    "spinning": {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "28",
                 "GOMP_SPINCOUNT": "INFINITE"},
    "passive OpenMP": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "28",
                       "GOMP_SPINCOUNT": "0"},
    "no spin": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4",
                "GOMP_SPINCOUNT": "0"},
    "short spin": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4",
                   "GOMP_SPINCOUNT": "3000"},
    "longer spin": {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4",
                    "GOMP_SPINCOUNT": "30000"},
}


def _step_ms(model_name, image_shape, batch, steps, rng):
    """Median milliseconds of a training step after 5 warm-up steps, on random data."""
    import numpy as np

    from benchmarks.train_throughput import ours_step_function

    images = rng.random((batch * 4,) + image_shape).astype(np.float32)
    labels = rng.integers(0, 10, len(images))
    step = ours_step_function(model_name)
    times = []
    for index in range(steps + 5):
        chunk = slice(batch * (index % 4), batch * (index % 4 + 1))
        start = time.perf_counter()
        step(images[chunk], labels[chunk])
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times[5:]))


def _inference_ms(batch, calls, rng):
    """Median milliseconds of a LeNet forward pass in eval mode (no autograd)."""
    import numpy as np

    from minissl import Tensor, models, no_grad

    model = models.lenet(seed=0)
    model.eval()
    x = Tensor(rng.random((batch, 1, 28, 28)).astype(np.float32))
    times = []
    with no_grad():
        for _ in range(calls + 5):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times[5:]))


def worker(steps):
    """Child process: time training steps, inference passes and a GEMM after BLAS; print
    JSON."""
    import numpy as np

    from minissl import kernels

    rng = np.random.default_rng(0)
    timed = {"step_ms": _step_ms("lenet", (1, 28, 28), 64, steps, rng),
             "convnet_step_ms": _step_ms("convnet", (3, 32, 32), 128, max(3, steps // 6), rng),
             "inference_1_ms": _inference_ms(1, 10 * steps, rng),
             "inference_100_ms": _inference_ms(100, steps, rng)}
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    kernels.gemm(a, a)  # compile
    after_blas = []
    for _ in range(10):
        a @ a
        start = time.perf_counter()
        kernels.gemm(a, a)
        after_blas.append(time.perf_counter() - start)
    print(json.dumps({**timed, "gemm_after_blas_gflops":
                      2 * 1024 ** 3 / float(np.median(after_blas)) / 1e9}))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60,
                        help="timed LeNet steps per setting, after 5 warm-up steps (default 60;"
                             " a sixth as many ConvNet steps, ten times as many batch-1 passes)")
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
    print(f"{'setting':<16}{'LeNet step':>11}{'ConvNet step':>13}{'LeNet eval b1':>14}"
          f"{'LeNet eval b100':>16}{'Numba GEMM after BLAS':>23}")
    print(f"{'':<16}{'ms':>11}{'ms':>13}{'ms':>14}{'ms':>16}{'GFLOP/s':>23}")
    rows = []
    for name, variables in SETTINGS.items():
        done = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--worker", "--steps",
                               str(args.steps)], env={**os.environ, **variables},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} worker failed:\n{done.stderr[-2000:]}")
        row = {"setting": name, **variables, **json.loads(done.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{name:<16}{row['step_ms']:>11.1f}{row['convnet_step_ms']:>13.1f}"
              f"{row['inference_1_ms']:>14.3f}{row['inference_100_ms']:>16.2f}"
              f"{row['gemm_after_blas_gflops']:>23.1f}")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"rows": rows}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
