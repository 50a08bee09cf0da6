"""Where the time of one training step goes: a per-op profile, forward and backward.

    python -m benchmarks.profile_step --model resnet20            # batch 128
    python -m benchmarks.profile_step --model convnet --steps 10
    python -m benchmarks.profile_step --model lenet --batch 64 --top 8
    python -m benchmarks.profile_step --help

Each differentiable op is a `Function` with a static forward and backward; this benchmark
wraps both, for every Function subclass, with a clock, runs a few warm-up steps (Numba
compiles, buffers settle), then times `--steps` training steps (SGD with momentum 0.9 and
weight decay, random data of the model's input shape) and prints, per op and direction,
the milliseconds per step, the share of the step and the number of calls. What no op owns
(the graph walk, gradient accumulation, the optimizer) is the "outside ops" line.
The wrappers add about a microsecond per call: negligible next to a convolution.
"""

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np

MODELS = {"mlp": ((784,), 100), "lenet": ((1, 28, 28), 64),
          "convnet": ((3, 32, 32), 128), "resnet20": ((3, 32, 32), 128),
          "resnet32": ((3, 32, 32), 128)}


def build_model(name):
    """The model called `name` (a key of MODELS), seeded."""
    from minissl import models

    builders = {"mlp": models.mlp, "lenet": models.lenet, "convnet": models.cifar_convnet,
                "resnet20": lambda: models.resnet_cifar(20),
                "resnet32": lambda: models.resnet_cifar(32)}
    return builders[name]()


def _all_functions():
    """Every Function subclass defined so far (minissl.ops imports them all)."""
    from minissl.autograd import Function

    found, pending = [], [Function]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


class OpClock:
    """Wraps forward/backward of every Function subclass; sums seconds and calls per key."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.active = False
        self._saved = []

    def _wrap(self, cls, direction):
        original = cls.__dict__[direction].__func__
        key = (cls.__name__, direction)

        def timed(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self.seconds[key] += time.perf_counter() - start
            self.calls[key] += 1
            return result
        self._saved.append((cls, direction, cls.__dict__[direction]))
        setattr(cls, direction, staticmethod(timed))

    def install(self):
        for cls in _all_functions():
            for direction in ("forward", "backward"):
                if direction in cls.__dict__:
                    self._wrap(cls, direction)

    def remove(self):
        for cls, direction, method in reversed(self._saved):
            setattr(cls, direction, method)
        self._saved.clear()


def make_step(model):
    """One SGD training step on (inputs, labels) for `model`."""
    from minissl import Tensor, ops, optim

    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(inputs, labels):
        loss = ops.cross_entropy(model(Tensor(inputs)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def profile(model_name, batch, steps, warmup):
    """Return (rows, total seconds per step); rows are (op, direction, s/step, calls/step)."""
    shape, _ = MODELS[model_name]
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((batch, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    step = make_step(build_model(model_name))
    clock = OpClock()
    clock.install()
    try:
        for _ in range(warmup):
            step(inputs, labels)
        clock.active = True
        start = time.perf_counter()
        for _ in range(steps):
            step(inputs, labels)
        total = (time.perf_counter() - start) / steps
    finally:
        clock.remove()
    rows = [(name, direction, seconds / steps, clock.calls[(name, direction)] / steps)
            for (name, direction), seconds in clock.seconds.items()]
    rows.sort(key=lambda row: -row[2])
    return rows, total


def print_profile(model_name, batch, steps, rows, total, top):
    print(f"{model_name}, batch {batch}: {total * 1000:.1f} ms per training step "
          f"(mean of {steps})")
    print(f"{'op':<20}{'direction':<10}{'ms/step':>9}{'share':>8}{'calls':>7}")
    shown = rows if top is None else rows[:top]
    for name, direction, seconds, calls in shown:
        print(f"{name:<20}{direction:<10}{seconds * 1000:>9.2f}{seconds / total:>8.1%}"
              f"{calls:>7.0f}")
    hidden = sum(row[2] for row in rows[len(shown):])
    if hidden:
        print(f"{'(other ops)':<30}{hidden * 1000:>9.2f}{hidden / total:>8.1%}")
    outside = total - sum(row[2] for row in rows)
    print(f"{'(outside ops)':<30}{outside * 1000:>9.2f}{outside / total:>8.1%}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet20",
                        help="which model (default resnet20)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: 128 for CIFAR models, 64 LeNet, 100 MLP)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--top", type=int, default=None, help="print only the N slowest rows")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        parser.error("--steps and --batch must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    batch = args.batch or MODELS[args.model][1]
    rows, total = profile(args.model, batch, args.steps, args.warmup)
    print_profile(args.model, batch, args.steps, rows, total, args.top)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": args.model, "batch": batch, "steps": args.steps,
                       "ms_per_step": 1000 * total,
                       "rows": [{"op": name, "direction": direction, "ms_per_step": 1000 * seconds,
                                 "calls_per_step": calls}
                                for name, direction, seconds, calls in rows]}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
