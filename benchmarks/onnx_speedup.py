"""The speedup outside minissl: the paper's sparse structures, dense and compacted, exported to
ONNX and timed in onnxruntime (CPU), beside the same models timed in minissl.

    python -m benchmarks.onnx_speedup                     # LeNet rows #2-#5 and the MLP's
    python -m benchmarks.onnx_speedup --batch 1 --threads 1
    python -m benchmarks.onnx_speedup --json out.json

Each row is built as `benchmarks.speedup` builds it (random weights with exactly the row's
zero groups), compacted, checked to predict the same class on the MNIST test images in
onnxruntime as in minissl, then both graphs run side by side in one onnxruntime process:
bursts of calls alternate between the sparse (dense-shaped) graph and the compacted one,
and the speedup is the median of the per-round ratios, with its quartiles. onnxruntime uses
`--threads` intra-op threads (default 2, the cores of these machines). The FLOP-ideal is
the dense FLOPs over the compacted FLOPs. Needs onnx and onnxruntime (pip install -e
".[onnx]").
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import speedup
from minissl import compact, onnx


def session(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ratio_of_bursts(dense, small, inputs, rounds, burst_seconds=0.02):
    """Median and quartiles of dense time / compacted time over `rounds` alternating bursts."""
    feed = {"input": inputs}
    for run in (dense, small):  # warm-up
        for _ in range(3):
            run.run(None, feed)
    ratios = []
    for _ in range(rounds):
        times = []
        for run in (dense, small):
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < burst_seconds or calls < 2:
                run.run(None, feed)
                calls += 1
            times.append((time.perf_counter() - start) / calls)
        ratios.append(times[0] / times[1])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return float(median), float(q1), float(q3)


def time_row(name, model, input_shape, images, args, folder):
    small, plan = compact.compact(model, input_shape)
    dense_path = onnx.export(model, folder / f"{name}_sparse.onnx", input_shape)
    small_path = onnx.export(small, folder / f"{name}_compacted.onnx", input_shape)
    dense, compacted = session(dense_path, args.threads), session(small_path, args.threads)
    agree = int((dense.run(None, {"input": images})[0].argmax(1)
                 == compacted.run(None, {"input": images})[0].argmax(1)).sum())
    if agree != len(images):
        raise RuntimeError(f"{name}: the compacted graph disagrees on {len(images) - agree} images")
    inputs = images[:args.batch]
    median, q1, q3 = ratio_of_bursts(dense, compacted, inputs, args.rounds)
    return {"row": name, "batch": args.batch, "threads": args.threads,
            "flop_ideal": plan.flops_before / plan.flops_after, "ort_speedup": median,
            "ort_iqr": [q1, q3], "same_predictions": [agree, len(images)]}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_speedup",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--batch", type=int, default=100, help="images per call (default 100)")
    parser.add_argument("--threads", type=int, default=2,
                        help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="alternating bursts per row (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    for name in ("batch", "threads", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        sys.exit("error: this benchmark needs onnx and onnxruntime: pip install -e '.[onnx]'")
    rows = []
    print(f"{'row':<10}{'FLOP-ideal':>11}{'onnxruntime speedup':>21}   quartiles   "
          f"(batch {args.batch}, {args.threads} threads)")
    with tempfile.TemporaryDirectory() as folder:
        for paper, specs, structure in (("lenet", speedup.LENET_ROWS, speedup.lenet_structure),
                                        ("mlp", speedup.MLP_ROWS, speedup.mlp_structure)):
            for spec in specs:
                model, input_shape, _ = structure(spec, args.seed)
                images = speedup.mnist_test_images(input_shape)[:1000]
                row = time_row(f"{paper} {spec['name']}", model.eval(), input_shape, images,
                               args, Path(folder))
                rows.append(row)
                print(f"{row['row']:<10}{row['flop_ideal']:>10.2f}x{row['ort_speedup']:>20.2f}x"
                      f"   {row['ort_iqr'][0]:.2f}-{row['ort_iqr'][1]:.2f}")
    if args.json:
        from minissl.train.records import write_json

        write_json(args.json, {"rows": rows})
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
