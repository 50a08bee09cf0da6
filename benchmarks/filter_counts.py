"""Filter counts that BLAS likes: the forward GEMM on a filter count padded to a multiple of four.

    python -m benchmarks.filter_counts                   # GEMM sweep, then compacted convs
    python -m benchmarks.filter_counts --counts 8 33 --rounds 9 --json out.json
    python -m benchmarks.filter_counts --help

Part 1 times NumPy's sgemm alone, W2 (M, K) @ cols (K, N), for every filter count M in
--counts (the median of --repeats calls), the shape of one chunk of a compacted
convolution. Part 2 times whole compacted convolutions (`ops.conv2d_gathered`, batch
--batch, random kept columns) with the filter count padded to a multiple of four
(ops.conv.GEMM_FILTER_MULTIPLE = 4, the default) and unpadded (1), alternating in --rounds
rounds of 5 calls each; it prints the median and quartiles of unpadded time / padded time
(above 1: padding wins). Run it with nothing else busy on the machine; with
NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 it measures one core, the steadiest figures.
"""

import argparse
import json
import time

from minissl.atomic import atomic_file

# (name, input (C, H, W), kernel, padding, [(filters, kept columns), ...]): compacted
# layers of the kind SSL leaves (LeNet rows #2-#5, ConvNet conv2 rows)
CONV_CASES = [
    ("LeNet conv2", (20, 12, 12), 5, 0, [(19, 100), (11, 75), (15, 75), (50, 41), (50, 14)]),
    ("ConvNet conv2", (32, 16, 16), 5, 2, [(25, 357), (23, 326), (18, 300), (27, 240)]),
]


def gemm_sweep(counts, depth, width, repeats):
    """{M: median ms} for W2 (M, depth) @ cols (depth, width), float32, for M in `counts`."""
    import numpy as np

    from minissl.timing import measure

    rng = np.random.default_rng(0)
    cols = rng.standard_normal((depth, width)).astype(np.float32)
    times = {}
    for filters in counts:
        weight2 = rng.standard_normal((filters, depth)).astype(np.float32)
        product = np.empty((filters, width), np.float32)
        timed = measure(lambda: np.matmul(weight2, cols, out=product), repeats=repeats)
        times[filters] = 1000 * timed.median
    return times


def padded_over_unpadded(batch, rounds):
    """Rows of {layer, filters, columns, ratio quartiles, padded ms} for CONV_CASES."""
    import numpy as np

    from minissl import Tensor, no_grad, ops
    from minissl.ops import conv as conv_module

    rng = np.random.default_rng(0)
    rows = []
    default = conv_module.GEMM_FILTER_MULTIPLE
    try:
        with no_grad():
            for name, (channels, height, width), kernel, padding, shapes in CONV_CASES:
                x = Tensor(rng.standard_normal((batch, channels, height, width)).astype(np.float32))
                for filters, columns in shapes:
                    kept = np.sort(rng.choice(channels * kernel * kernel, columns, replace=False))
                    weight2 = Tensor(rng.standard_normal((filters, columns)).astype(np.float32))

                    def call():
                        return ops.conv2d_gathered(x, weight2, kept, (kernel, kernel),
                                                   padding=padding, algorithm="gemm")
                    ratios, padded_ms = [], []
                    for multiple in (1, 4):  # warm-up: compile, fill the scratch buffers
                        conv_module.GEMM_FILTER_MULTIPLE = multiple
                        call()
                    for _ in range(rounds):
                        seconds = {}
                        for multiple in (1, 4):
                            conv_module.GEMM_FILTER_MULTIPLE = multiple
                            start = time.perf_counter()
                            for _ in range(5):
                                call()
                            seconds[multiple] = time.perf_counter() - start
                        ratios.append(seconds[1] / seconds[4])
                        padded_ms.append(1000 * seconds[4] / 5)
                    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
                    rows.append({"layer": name, "filters": filters, "columns": columns,
                                 "unpadded_over_padded": float(median),
                                 "quartiles": [float(q1), float(q3)],
                                 "padded_ms": float(np.median(padded_ms))})
    finally:
        conv_module.GEMM_FILTER_MULTIPLE = default
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.filter_counts",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--counts", type=int, nargs=2, default=[8, 64], metavar=("FIRST", "LAST"),
                        help="filter counts of the GEMM sweep, inclusive (default 8 64)")
    parser.add_argument("--depth", type=int, default=357,
                        help="GEMM inner size K, the kept columns (default 357)")
    parser.add_argument("--width", type=int, default=2816,
                        help="GEMM width N, images x output pixels of a chunk (default 2816)")
    parser.add_argument("--repeats", type=int, default=30, help="timed GEMMs per count (default 30)")
    parser.add_argument("--batch", type=int, default=100, help="images per convolution (default 100)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="alternating rounds per compacted convolution (default 15)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    first, last = args.counts
    if min(first, args.depth, args.width, args.repeats, args.batch, args.rounds) < 1 or last < first:
        parser.error("--counts must be 1 <= FIRST <= LAST; the other sizes must be positive")

    gemm = gemm_sweep(range(first, last + 1), args.depth, args.width, args.repeats)
    print(f"sgemm (M, {args.depth}) @ ({args.depth}, {args.width}), median ms:")
    for filters, ms in gemm.items():
        slower = [other for other in gemm if other > filters and other % 4 == 0 and
                  other - filters < 4 and gemm[other] < ms]
        note = f"  (slower than {slower[0]})" if slower else ""
        print(f"  M = {filters:3d}: {ms:6.3f} ms{note}")
    convs = padded_over_unpadded(args.batch, args.rounds)
    print(f"\ncompacted convolutions at batch {args.batch}: unpadded time / padded time "
          f"(median, quartiles of {args.rounds} rounds; above 1: padding wins)")
    for row in convs:
        print(f"  {row['layer']:<14} {row['filters']:3d} x {row['columns']:3d}: "
              f"{row['unpadded_over_padded']:.3f} ({row['quartiles'][0]:.3f}-"
              f"{row['quartiles'][1]:.3f}), padded {row['padded_ms']:.2f} ms")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"gemm_ms": {str(k): v for k, v in gemm.items()}, "depth": args.depth,
                       "width": args.width, "convolutions": convs}, handle, indent=1)


if __name__ == "__main__":
    main()
