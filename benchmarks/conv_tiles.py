"""Which inference convolution is faster, shape by shape: the per-image tile kernel
(kernels.conv_tiles), im2col + BLAS GEMM + layout pass (ops.Conv2d) or the shifted-runs
kernel (kernels.conv_shifted); and whether the cost model (kernels.conv_algorithm) picks
the fastest.

    python -m benchmarks.conv_tiles                 # LeNet's compacted layers, CIFAR layers
    python -m benchmarks.conv_tiles --batch 1 --json out.json
    python -m benchmarks.conv_tiles --help

Random inputs, float32, Numba backend, no autograd. The shapes: the compacted LeNet layers of
the paper's rows #2-#5 (the paper's Tables 1 and 2: conv1 2-4 filters on 1 channel, conv2
12-50 filters on 1-4 channels or 14-41 gathered columns), the dense LeNet layers, and the
CIFAR ConvNet's and ResNet-20's layers. The three are timed side by side
(minissl.timing.compare); a ratio is the median of per-round gemm time / tiles (or shifted)
time, > 1 when that kernel is faster than BLAS.
"""

import argparse
import sys

import numpy as np

# (name, input (C, H, W), filters, kernel, stride, padding, kept columns or None for all)
SHAPES = [
    ("LeNet #2 conv1", (1, 28, 28), 4, 5, 1, 0, None),
    ("LeNet #2 conv2", (4, 12, 12), 19, 5, 1, 0, None),
    ("LeNet #3 conv1", (1, 28, 28), 3, 5, 1, 0, None),
    ("LeNet #3 conv2", (3, 12, 12), 12, 5, 1, 0, None),
    ("LeNet #4 conv1", (1, 28, 28), 2, 5, 1, 0, 21),
    ("LeNet #4 conv2", (2, 12, 12), 50, 5, 1, 0, 41),
    ("LeNet #5 conv1", (1, 28, 28), 1, 5, 1, 0, 7),
    ("LeNet #5 conv2", (1, 12, 12), 50, 5, 1, 0, 14),
    ("LeNet conv1 (dense)", (1, 28, 28), 20, 5, 1, 0, None),
    ("LeNet conv2 (dense)", (20, 12, 12), 50, 5, 1, 0, None),
    ("ConvNet conv1", (3, 32, 32), 32, 5, 1, 2, None),
    ("ConvNet conv2", (32, 16, 16), 32, 5, 1, 2, None),
    ("ConvNet conv2, 60% columns", (32, 16, 16), 32, 5, 1, 2, 320),
    ("ConvNet conv3", (32, 8, 8), 64, 5, 1, 2, None),
    ("ResNet stem", (3, 32, 32), 16, 3, 1, 1, None),
    ("ResNet 16-ch", (16, 32, 32), 16, 3, 1, 1, None),
    ("ResNet 32-ch", (32, 16, 16), 32, 3, 1, 1, None),
    ("ResNet 64-ch", (64, 8, 8), 64, 3, 1, 1, None),
]


def measure(batch, repeats):
    """One row per shape: times of the three algorithms, the ratios to gemm, the cost model's
    pick and the fastest."""
    import minissl
    from minissl import Tensor, kernels, no_grad, timing
    from minissl.ops.conv import Conv2d

    minissl.set_backend("numba")
    rng = np.random.default_rng(0)
    rows_out = []
    for name, (channels, height, width), filters, kernel, stride, padding, kept in SHAPES:
        x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
        count = channels * kernel * kernel
        rows = np.sort(rng.choice(count, kept, replace=False)) if kept else None
        depth = kept or count
        weight2 = rng.standard_normal((filters, depth)).astype(np.float32)
        bias = rng.standard_normal(filters).astype(np.float32)
        x_t, w_t, b_t = Tensor(x), Tensor(weight2), Tensor(bias)
        geometry = dict(kernel_size=(kernel, kernel), stride=stride, padding=padding,
                        rows=None if rows is None else rows.astype(np.int64))

        def gemm():
            return Conv2d.apply(x_t, w_t, b_t, **geometry)

        def tiles():
            return kernels.conv_tiles(x, weight2, kernel, kernel, stride, padding, rows, bias)

        def shifted():
            return kernels.conv_shifted(x, weight2, kernel, kernel, stride, padding, rows,
                                        bias)

        with no_grad():
            np.testing.assert_allclose(tiles(), gemm().data, rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(shifted(), gemm().data, rtol=1e-3, atol=1e-3)
            (slow, fast, runs), samples = timing.compare([gemm, tiles, shifted],
                                                         repeats=repeats, warmup=3)
        ratio = timing.Ratio.of(samples[0], samples[1])
        shifted_ratio = timing.Ratio.of(samples[0], samples[2])
        out_h = kernels.conv_output_size(height, kernel, stride, padding)
        out_w = kernels.conv_output_size(width, kernel, stride, padding)
        pixels = out_h * out_w
        pick = kernels.conv_algorithm(batch, filters, depth, out_h, out_w, stride)
        times = {"gemm": slow.median, "tiles": fast.median, "shifted": runs.median}
        rows_out.append({"shape": name, "batch": batch, "filters": filters, "depth": depth,
                         "pixels": pixels,
                         "gemm_ms": 1e3 * slow.median, "tiles_ms": 1e3 * fast.median,
                         "shifted_ms": 1e3 * runs.median,
                         "ratio": ratio.median, "ratio_iqr": [ratio.q1, ratio.q3],
                         "shifted_ratio": shifted_ratio.median,
                         "shifted_ratio_iqr": [shifted_ratio.q1, shifted_ratio.q3],
                         "pick": pick, "fastest": min(times, key=times.get),
                         "pick_over_fastest": times[pick] / min(times.values())})
    return rows_out


def print_table(rows):
    print(f"{'shape':<28}{'N':>4}{'R':>5}{'OH*OW':>7}{'gemm ms':>9}{'tiles ms':>10}"
          f"{'shifted ms':>11}{'gemm/tiles':>11}{'gemm/shifted':>13}   pick     fastest")
    for row in rows:
        # a pick more than 10% slower than the fastest path is marked
        mark = f" <- {row['pick_over_fastest']:.2f}x slower" if (
            row["pick_over_fastest"] > 1.1) else ""
        print(f"{row['shape']:<28}{row['filters']:>4}{row['depth']:>5}{row['pixels']:>7}"
              f"{row['gemm_ms']:>9.3f}{row['tiles_ms']:>10.3f}{row['shifted_ms']:>11.3f}"
              f"{row['ratio']:>11.2f}{row['shifted_ratio']:>13.2f}   "
              f"{row['pick']:<9}{row['fastest']}{mark}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_tiles",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 8, 1],
                        help="batch sizes to time (default 100 8 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if min(args.batch) < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows = []
    for batch in args.batch:
        print(f"\nbatch {batch} (gemm/tiles, gemm/shifted > 1: that kernel is faster than "
              f"BLAS; pick: the cost model's choice)")
        measured = measure(batch, args.repeats)
        print_table(measured)
        rows += measured
    if args.json:
        from minissl.train.records import write_json
        write_json(args.json, {"rows": rows})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
