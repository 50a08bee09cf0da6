"""GEMM and convolution kernels: ours against NumPy's BLAS and (when installed) PyTorch.

    python -m benchmarks.kernels              # GEMM table, then conv layers
    python -m benchmarks.kernels --json kernels.json
    python -m benchmarks.kernels --help

1. GEMM: GFLOP/s of minissl's Numba `gemm` and of NumPy's BLAS (`a @ b`) on square
   float32 matrices (128-2048) and on the MLP and LeNet layer products, with the ratio.
2. Convolution layers (LeNet, batch 64; CIFAR ConvNet, batch 100): forward+backward time of
   minissl's conv2d and of torch.nn.functional.conv2d on the same arrays, when torch is
   installed (`pip install torch==2.13.0`); otherwise the torch column says so.

Each number is the median of repeated calls after warm-up (minissl.timing). The two sides
of a ratio are timed one after the other in the same process, with a pause between
them so that the idle threads of one pool are asleep when the other starts.
"""

import argparse
import json
import sys
import time

import numpy as np

from minissl import Tensor, kernels, ops
from minissl.atomic import atomic_file
from minissl.timing import measure

SQUARE_SIZES = (128, 256, 512, 1024, 2048)
# (name, M, K, N) of the products one training step runs (batch 100 MLP, batch 64 LeNet).
LAYER_PRODUCTS = (
    ("MLP fc1 forward", 100, 784, 500), ("MLP fc1 weight grad", 500, 100, 784),
    ("MLP fc2 forward", 100, 500, 300),
    ("LeNet conv1 forward", 20, 25, 36864), ("LeNet conv2 forward", 50, 500, 4096),
    ("LeNet conv2 weight grad", 50, 4096, 500), ("LeNet conv2 input grad", 500, 50, 4096),
    ("LeNet fc1 forward", 64, 800, 500),
)
# (name, batch, C_in, H, C_out, kernel, padding)
CONV_LAYERS = (
    ("LeNet conv1", 64, 1, 28, 20, 5, 0), ("LeNet conv2", 64, 20, 12, 50, 5, 0),
    ("ConvNet conv1", 100, 3, 32, 32, 5, 2), ("ConvNet conv2", 100, 32, 16, 32, 5, 2),
    ("ConvNet conv3", 100, 32, 8, 64, 5, 2),
)
PAUSE_S = 0.2


def gemm_row(name, m, k, n, repeats, rng):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    flops = 2.0 * m * k * n
    blas = measure(lambda: a @ b, repeats=repeats, min_seconds=0.2)
    time.sleep(PAUSE_S)
    ours = measure(lambda: kernels.gemm(a, b), repeats=repeats, min_seconds=0.2)
    time.sleep(PAUSE_S)
    return {"name": name, "m": m, "k": k, "n": n,
            "ours_gflops": flops / ours.median / 1e9, "blas_gflops": flops / blas.median / 1e9,
            "ratio": blas.median / ours.median}


def ours_conv_step(x, weight, bias, padding):
    """One forward + backward of minissl's conv2d; returns a callable."""
    def step():
        xt, wt, bt = (Tensor(array, requires_grad=True) for array in (x, weight, bias))
        ops.conv2d(xt, wt, bt, padding=padding).sum().backward()
    return step


def torch_conv_step(torch, x, weight, bias, padding):
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True)

    def step():
        xt.grad = wt.grad = bt.grad = None
        torch.nn.functional.conv2d(xt, wt, bt, padding=padding).sum().backward()
    return step


def conv_row(spec, repeats, rng, torch):
    name, batch, c_in, size, c_out, kernel, padding = spec
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    weight = (rng.standard_normal((c_out, c_in, kernel, kernel)) * 0.1).astype(np.float32)
    bias = np.zeros(c_out, np.float32)
    ours = measure(ours_conv_step(x, weight, bias, padding), repeats=repeats, min_seconds=0.3)
    row = {"name": name, "batch": batch, "ours_ms": ours.median * 1e3, "torch_ms": None,
           "ratio": None}
    if torch is not None:
        time.sleep(PAUSE_S)
        theirs = measure(torch_conv_step(torch, x, weight, bias, padding), repeats=repeats,
                         min_seconds=0.3)
        row["torch_ms"] = theirs.median * 1e3
        row["ratio"] = ours.median / theirs.median
    time.sleep(PAUSE_S)
    return row


def import_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed calls per measurement, after warm-up (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    parser.add_argument("--no-conv", action="store_true", help="only the GEMM table")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rng = np.random.default_rng(0)
    print(f"{'GEMM (float32)':<26}{'M x K x N':>20}{'ours GF/s':>11}{'BLAS GF/s':>11}{'ours/BLAS':>11}")
    gemm_rows = []
    specs = [(f"square {n}", n, n, n) for n in SQUARE_SIZES] + list(LAYER_PRODUCTS)
    for name, m, k, n in specs:
        row = gemm_row(name, m, k, n, args.repeats, rng)
        gemm_rows.append(row)
        print(f"{name:<26}{f'{m} x {k} x {n}':>20}{row['ours_gflops']:>11.1f}"
              f"{row['blas_gflops']:>11.1f}{row['ratio']:>11.2f}")
    conv_rows = []
    if not args.no_conv:
        torch = import_torch(args.threads)
        note = "" if torch is not None else "  (torch not installed: pip install torch==2.13.0)"
        print(f"\n{'conv forward+backward':<26}{'batch':>6}{'ours ms':>10}{'torch ms':>10}"
              f"{'ours/torch':>12}{note}")
        for spec in CONV_LAYERS:
            row = conv_row(spec, args.repeats, rng, torch)
            conv_rows.append(row)
            theirs = f"{row['torch_ms']:>10.2f}{row['ratio']:>12.2f}" if torch else f"{'-':>10}{'-':>12}"
            print(f"{row['name']:<26}{row['batch']:>6}{row['ours_ms']:>10.2f}{theirs}")
    if args.json:
        payload = {"gemm": gemm_rows, "conv": conv_rows}
        with atomic_file(args.json) as handle:
            json.dump(payload, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
