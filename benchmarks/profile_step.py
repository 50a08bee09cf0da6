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

The convolutions and matrix products also get their arithmetic rate: FLOPs counted as the
direct method does them (2 per multiply-add: 2 * B * C_out * OH * OW * C_in * KH * KW for a
convolution's forward, the same again for each of its two gradients computed), divided by
the op's time, and that rate as a share of this machine's peak. The peak is measured here,
first: the fastest of several float32 2048 x 2048 matrix products in NumPy's BLAS on all
threads (what a tuned GEMM reaches on this machine, a little under the cores' FMA limit for
the vector width that BLAS uses: the line says when OPENBLAS_CORETYPE holds it to an older
CPU's, e.g. AVX2 on a CPU with AVX-512). Where PyTorch is installed, the same product is timed
in it too, which says whether BLAS's peak is the machine's: on a CPU that runs AVX-512 as two
256-bit halves (AMD Zen 4) the widths have the same peak.
The whole step's rate counts the same FLOPs over the whole step's time.
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from minissl.atomic import atomic_file

PEAK_SIZE, PEAK_REPEATS = 2048, 7  # the peak: best of 7 products of 2048 x 2048 float32

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


def measured_peak(size=PEAK_SIZE, repeats=PEAK_REPEATS):
    """FLOP/s of the fastest of `repeats` float32 (size x size) @ (size x size) products in
    NumPy's BLAS (2 * size**3 FLOPs each), on the threads it is allowed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm up: threads started, pages touched
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def torch_peak(size=PEAK_SIZE, repeats=PEAK_REPEATS):
    """(FLOP/s, CPU capability) of the same product in PyTorch, on the same number of threads
    as minissl's kernels, or None when PyTorch is not installed: its kernels (oneDNN, MKL) pick
    their own vector width, so this says whether BLAS's peak is the machine's."""
    try:
        import torch
    except ImportError:
        return None
    import numba

    torch.set_num_threads(numba.get_num_threads())
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32))
    b = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32))
    out = torch.empty((size, size), dtype=torch.float32)
    torch.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return 2 * size ** 3 / best, capability


def vector_facts():
    """What bounds the measured peak: the CPU's widest vector extension (from /proc/cpuinfo,
    where there is one) and OPENBLAS_CORETYPE when it is set (it makes OpenBLAS run the
    kernels of an older CPU, e.g. Haswell's AVX2 ones on a CPU with AVX-512, so the peak
    measured through it is that older CPU's; other libraries may still use the wider ones)."""
    facts = []
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if flags:
        widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE or less"
        facts.append(f"the CPU has {widest}")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        facts.append(f"OPENBLAS_CORETYPE={coretype} makes OpenBLAS use {coretype}'s kernels")
    return facts


def conv_flops(batch, c_out, pixels, depth):
    """Multiply-adds of a convolution counted as the direct method: 2 FLOPs each, C_out output
    maps of `pixels` outputs per image, each a sum over `depth` = C_in * KH * KW weights (or
    the kept columns of a shape-compacted layer)."""
    return 2 * batch * c_out * pixels * depth


def _gradients(ctx):
    """How many of a product's two gradients (to its first input, to its second) a backward
    call computes; each costs as many FLOPs as the forward product."""
    return int(ctx.needs_grad[0]) + int(ctx.needs_grad[1])


def op_flops(name, direction, args, result):
    """FLOPs of one call of the Function `name` in `direction` (its forward or backward
    arguments, the ctx first, and its result), or 0 for an op that is not a product.
    The forward counts agree with the compaction plan's (tests/test_benchmarks.py)."""
    ctx, backward = args[0], direction == "backward"
    if name == "Conv2d":
        out = args[1] if backward else result  # grad_out or the output, (B, C_out, OH, OW)
        depth = (ctx.weight2 if backward else args[2]).shape[1]  # W2 (C_out, R)
        flops = conv_flops(out.shape[0], out.shape[1], out.shape[2] * out.shape[3], depth)
    elif name == "Linear":
        x, weight = (ctx.x, ctx.weight) if backward else args[1:3]  # (B, in), (out, in)
        flops = 2 * x.shape[0] * weight.shape[0] * weight.shape[1]
    elif name == "MatMul":
        out, a = (args[1], ctx.a) if backward else (result, args[1])  # (*, n, m), (*, n, k)
        flops = 2 * int(np.prod(out.shape)) * a.shape[-1]
    else:
        return 0
    return _gradients(ctx) * flops if backward else flops


class OpClock:
    """Wraps forward/backward of every Function subclass; sums seconds, calls and FLOPs
    (op_flops) per key."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.flops = defaultdict(int)
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
            self.flops[key] += op_flops(key[0], direction, args, result)
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
    """Return (rows, total seconds per step); rows are (op, direction, s/step, calls/step,
    FLOPs/step)."""
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
    rows = [(name, direction, seconds / steps, clock.calls[(name, direction)] / steps,
             clock.flops[(name, direction)] / steps)
            for (name, direction), seconds in clock.seconds.items()]
    rows.sort(key=lambda row: -row[2])
    return rows, total


def print_profile(model_name, batch, steps, rows, total, top, peak):
    """The table: per op and direction its time, share of the step, calls and, for the
    products, GFLOP/s and share of the measured `peak` (FLOP/s); then the whole step's."""
    print(f"{model_name}, batch {batch}: {total * 1000:.1f} ms per training step "
          f"(mean of {steps})")
    print(f"{'op':<20}{'direction':<10}{'ms/step':>9}{'share':>8}{'calls':>7}"
          f"{'GFLOP/s':>9}{'of peak':>9}")
    shown = rows if top is None else rows[:top]
    for name, direction, seconds, calls, flops in shown:
        rate = (f"{flops / seconds / 1e9:>9.1f}{flops / seconds / peak:>9.1%}"
                if flops and seconds else "")
        print(f"{name:<20}{direction:<10}{seconds * 1000:>9.2f}{seconds / total:>8.1%}"
              f"{calls:>7.0f}{rate}")
    hidden = sum(row[2] for row in rows[len(shown):])
    if hidden:
        print(f"{'(other ops)':<30}{hidden * 1000:>9.2f}{hidden / total:>8.1%}")
    outside = total - sum(row[2] for row in rows)
    print(f"{'(outside ops)':<30}{outside * 1000:>9.2f}{outside / total:>8.1%}")
    for direction in ("forward", "backward"):
        flops = sum(row[4] for row in rows if row[1] == direction)
        seconds = sum(row[2] for row in rows if row[1] == direction)
        print(f"all {direction} ops: {seconds * 1000:.1f} ms, {flops / 1e9:.2f} GFLOP, "
              f"{flops / seconds / 1e9:.1f} GFLOP/s ({flops / seconds / peak:.1%} of peak)")
    flops = sum(row[4] for row in rows)
    print(f"whole step: {flops / 1e9:.2f} GFLOP (convolutions and products, counted as the "
          f"direct method) in {total * 1000:.1f} ms: {flops / total / 1e9:.1f} GFLOP/s, "
          f"{flops / total / peak:.1%} of the peak")


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
    peak = measured_peak()
    print(f"peak: {peak / 1e9:.1f} GFLOP/s, the fastest of {PEAK_REPEATS} float32 "
          f"{PEAK_SIZE}x{PEAK_SIZE} matrix products in NumPy's BLAS on this machine, now"
          + "".join(f"; {fact}" for fact in vector_facts()))
    other = torch_peak()
    if other is not None:
        print(f"      {other[0] / 1e9:.1f} GFLOP/s for the same product in PyTorch "
              f"(CPU capability {other[1]}), for comparison")
    rows, total = profile(args.model, batch, args.steps, args.warmup)
    print_profile(args.model, batch, args.steps, rows, total, args.top, peak)
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"model": args.model, "batch": batch, "steps": args.steps,
                       "ms_per_step": 1000 * total, "peak_gflops": peak / 1e9,
                       "rows": [{"op": name, "direction": direction, "ms_per_step": 1000 * seconds,
                                 "calls_per_step": calls, "gflop_per_step": flops / 1e9}
                                for name, direction, seconds, calls, flops in rows]},
                      handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
