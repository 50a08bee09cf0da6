"""Why minissl keeps freed memory in the heap: page faults and time of a training step,
with glibc's default malloc settings and with minissl's (`minissl.backend`).

    python -m benchmarks.memory_reuse                      # ResNet-20 and the ConvNet
    python -m benchmarks.memory_reuse --models resnet20 --steps 10 --json out.json
    python -m benchmarks.memory_reuse --help

Each setting runs in its own child process (malloc is configured once per process):
  glibc default   MINISSL_KEEP_FREED_MEMORY=0: large arrays get fresh pages and give them back
  minissl default freed blocks up to 256 MB stay in the heap and are reused
Random CIFAR-shaped inputs, batch 128, 2 warm-up steps, then `--steps` timed steps. Prints,
per step: minor page faults (a count, not a timing: the same on a busy machine), the
system CPU time the kernel spent (mostly on those faults), wall time, and the peak
resident memory of the process.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from minissl.atomic import atomic_file

SETTINGS = {"glibc default": "0", "minissl default": "1"}


def worker(model_name, steps, one_thread=False):
    """Child process: time `steps` training steps after 2 warm-up steps; print JSON.
    `one_thread`: every allocation on the main thread (no chunk workers, one Numba and BLAS
    thread), so that the count does not depend on which thread got which chunk."""
    import numpy as np

    from benchmarks.profile_step import build_model, make_step

    if one_thread:
        import numba

        from minissl import workers

        numba.set_num_threads(1)
        workers.set_chunk_workers(False)

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    step = make_step(build_model(model_name))
    for _ in range(2):
        step(inputs, labels)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step(inputs, labels)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
                      "system_ms_per_step": 1000 * (after.ru_stime - before.ru_stime) / steps,
                      "wall_ms_per_step": 1000 * wall / steps,
                      "peak_mb": after.ru_maxrss / 1024}))


def run_worker(model_name, steps, keep, one_thread=False):
    env = dict(os.environ, MINISSL_KEEP_FREED_MEMORY=keep)
    if one_thread:
        env["OPENBLAS_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "benchmarks.memory_reuse", "--worker", "--models",
               model_name, "--steps", str(steps)] + (["--one-thread"] if one_thread else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{model_name} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_reuse",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=["convnet", "resnet20"],
                        default=["resnet20", "convnet"], help="models (default: both)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--one-thread", action="store_true",
                        help="every allocation on one thread (no chunk workers, one Numba and "
                             "BLAS thread): a count that no other load on the machine changes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.models[0], args.steps, args.one_thread)
        return
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        print("note: MALLOC_* variables are set, so minissl leaves malloc alone in both runs")
    print(f"{'model':<10}{'setting':<17}{'faults/step':>12}{'system ms':>11}{'wall ms':>9}"
          f"{'peak MB':>9}")
    rows = []
    for model_name in args.models:
        for setting, keep in SETTINGS.items():
            row = {"model": model_name, "setting": setting,
                   **run_worker(model_name, args.steps, keep, args.one_thread)}
            rows.append(row)
            print(f"{model_name:<10}{setting:<17}{row['faults_per_step']:>12,.0f}"
                  f"{row['system_ms_per_step']:>11.0f}{row['wall_ms_per_step']:>9.0f}"
                  f"{row['peak_mb']:>9.0f}")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"rows": rows, "steps": args.steps}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
