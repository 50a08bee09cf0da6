"""Convolution chunks side by side on worker threads vs one at a time (minissl.workers).

    python -m benchmarks.conv_chunks                        # ConvNet and ResNet-20, batch 128
    python -m benchmarks.conv_chunks --models convnet --rounds 5 --json out.json
    python -m benchmarks.conv_chunks --help

One process, one model, the same random CIFAR-shaped batch; the two settings alternate
round by round (`--rounds`), each round timing `--steps` SGD training steps and keeping the
fastest, so a machine that slows down for a while slows both. Prints every round and the
ratio of the fastest times (one at a time / side by side: above 1 means side by side wins).
"""

import argparse
import json
import time

from minissl.atomic import atomic_file

MODELS = ("convnet", "resnet20")
SETTINGS = {"side by side": True, "one at a time": False}


def time_steps(step, inputs, labels, steps):
    """Fastest of `steps` training steps, in milliseconds."""
    fastest = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step(inputs, labels)
        fastest = min(fastest, time.perf_counter() - start)
    return 1000 * fastest


def compare(model_name, batch, rounds, steps):
    """{setting: [ms per round]} for one model, settings alternating."""
    import numpy as np

    from benchmarks.profile_step import build_model, make_step
    from minissl import workers

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    step = make_step(build_model(model_name))
    times = {name: [] for name in SETTINGS}
    try:
        for enabled in SETTINGS.values():  # warm-up: compile, fill the scratch buffers
            workers.set_chunk_workers(enabled)
            step(inputs, labels)
        for _ in range(rounds):
            for name, enabled in SETTINGS.items():
                workers.set_chunk_workers(enabled)
                times[name].append(time_steps(step, inputs, labels, steps))
    finally:
        workers.set_chunk_workers(True)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_chunks",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if min(args.batch, args.rounds, args.steps) < 1:
        parser.error("--batch, --rounds and --steps must be positive")

    from minissl import workers

    if workers.chunk_workers() is None:
        print("note: no worker threads here (NumPy's BLAS cannot limit its threads per "
              "caller, or one thread only): both settings run one chunk at a time")
    rows = []
    for model_name in args.models:
        times = compare(model_name, args.batch, args.rounds, args.steps)
        fastest = {name: min(values) for name, values in times.items()}
        rows.append({"model": model_name, "batch": args.batch, "ms_per_round": times,
                     "fastest_ms": fastest,
                     "ratio": fastest["one at a time"] / fastest["side by side"]})
        for name, values in times.items():
            print(f"{model_name:<9}{name:<15}" + " ".join(f"{value:7.0f}" for value in values)
                  + f"  ms per step (fastest of {args.steps}, per round)")
        print(f"{model_name:<9}one at a time / side by side: {rows[-1]['ratio']:.2f}x "
              f"(fastest rounds)")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"workers": workers.worker_count(), "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
