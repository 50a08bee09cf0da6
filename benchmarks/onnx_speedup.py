"""The speedup outside minissl: the paper's sparse structures, dense and compacted, exported to
ONNX and timed in onnxruntime (CPU), beside the same models timed in minissl.

    python -m benchmarks.onnx_speedup                     # every row at batch 100
    python -m benchmarks.onnx_speedup --batch 1
    python -m benchmarks.onnx_speedup --rows lenet mlp --json out.json

Rows: LeNet #2-#5 and the MLP's #2 and #3 built as `benchmarks.speedup` builds them (random
weights with exactly the row's zero groups), the CIFAR ConvNet's #2 and #3 with the row and
column sparsity of the paper's Table 3 spread at random, and ResNet-20 with three residual
branches zeroed (SSL-ResNet-14, 2-4-6 layers per stage). Each is compacted and checked to
predict the same class in onnxruntime as in minissl (MNIST test images; random CIFAR-shaped
images for the CIFAR models). Then, in one process, bursts of calls alternate between the
sparse (dense-shaped) and the compacted graph in onnxruntime, and between the same two models
in minissl (conv layers on their tuned paths): each speedup is the median of the per-round
ratios, with its quartiles. "minissl / ort" is minissl's compacted time over onnxruntime's on
the same compacted graph (below 1: minissl is faster). onnxruntime: `--threads` intra-op
threads (default 2, the cores of these machines), sequential execution, all graph
optimizations. The FLOP-ideal is the dense FLOPs over the compacted FLOPs. Needs onnx and
onnxruntime (pip install -e ".[onnx]").
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import speedup
from minissl import Tensor, compact, models, nn, no_grad, onnx, timing

# Wen et al. 2016, Table 3: row (filter) and column (shape) sparsity of conv1-conv3, in %.
CONVNET_ROWS = [{"name": "#2", "rows": (50.0, 28.1, 1.6), "columns": (0.0, 59.3, 35.1)},
                {"name": "#3", "rows": (31.3, 0.0, 1.6), "columns": (0.0, 42.8, 9.8)}]
RESNET_REMOVED = ("4", "5", "8")  # blocks of stages 1 and 2 whose branches are zero


def convnet_structure(row, seed):
    """The CIFAR ConvNet with the row's share of filters and shape columns zeroed at random."""
    model = models.cifar_convnet(seed=seed)
    rng = np.random.default_rng(seed)
    for layer, rows, columns in zip(models.conv_layers(model), row["rows"], row["columns"]):
        weight2 = layer.weight.data.reshape(layer.weight.shape[0], -1)  # (N, C*KH*KW) view
        dead_rows = rng.choice(len(weight2), round(len(weight2) * rows / 100), replace=False)
        dead_columns = rng.choice(weight2.shape[1], round(weight2.shape[1] * columns / 100),
                                  replace=False)
        weight2[dead_rows] = 0
        weight2[:, dead_columns] = 0
        if layer.bias is not None:
            layer.bias.data[dead_rows] = 0
    return model, (3, 32, 32)


def resnet_structure(seed):
    """ResNet-20 with the branches of RESNET_REMOVED zeroed: what depth compaction removes."""
    model = models.resnet_cifar(20, seed=seed)
    stats = np.random.default_rng(seed)
    for _, module in model.named_modules():  # running statistics as after training
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean[:] = stats.normal(0, 0.2, module.channels)
            module.running_var[:] = stats.uniform(0.5, 2.0, module.channels)
    for name, module in model.named_modules():
        if name in RESNET_REMOVED:
            for parameter in module.branch.parameters():
                parameter.data[...] = 0
    return model, (3, 32, 32)


def minissl_ratio(model, small, inputs, rounds):
    """(median, q1, q3) of dense / compacted time in minissl, and the compacted median time."""
    x = Tensor(inputs)
    ratio = timing.network_speed(model, small, x, repeats=rounds, warmup=2, min_seconds=0.0)
    with no_grad():
        compacted = timing.measure(lambda: small(x), repeats=rounds, warmup=1)
    return (ratio.median, ratio.q1, ratio.q3), compacted.median


def session(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ratio_of_bursts(dense, small, inputs, rounds, burst_seconds=0.02):
    """(median, q1, q3) of dense time / compacted time over `rounds` alternating bursts, and
    the compacted graph's median seconds per call."""
    feed = {"input": inputs}
    for run in (dense, small):  # warm-up
        for _ in range(3):
            run.run(None, feed)
    ratios, small_times = [], []
    for _ in range(rounds):
        times = []
        for run in (dense, small):
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < burst_seconds or calls < 2:
                run.run(None, feed)
                calls += 1
            times.append((time.perf_counter() - start) / calls)
        ratios.append(times[0] / times[1])
        small_times.append(times[1])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return (float(median), float(q1), float(q3)), float(np.median(small_times))


def time_row(name, model, input_shape, images, args, folder):
    small, plan = compact.compact(model, input_shape)
    dense_path = onnx.export(model, folder / f"{name}_sparse.onnx", input_shape)
    small_path = onnx.export(small, folder / f"{name}_compacted.onnx", input_shape,
                             args.gathered)
    dense, compacted = session(dense_path, args.threads), session(small_path, args.threads)
    agree = int((dense.run(None, {"input": images})[0].argmax(1)
                 == compacted.run(None, {"input": images})[0].argmax(1)).sum())
    if agree != len(images):
        raise RuntimeError(f"{name}: the compacted graph disagrees on {len(images) - agree} images")
    inputs = images[:args.batch]
    (median, q1, q3), ort_small = ratio_of_bursts(dense, compacted, inputs, args.rounds)
    (ours, ours_q1, ours_q3), ours_small = minissl_ratio(model, small, inputs, args.rounds)
    return {"row": name, "batch": args.batch, "threads": args.threads,
            "flop_ideal": plan.flops_before / plan.flops_after, "ort_speedup": median,
            "ort_iqr": [q1, q3], "minissl_speedup": ours, "minissl_iqr": [ours_q1, ours_q3],
            "ort_compacted_s": ort_small, "minissl_compacted_s": ours_small,
            "minissl_over_ort": ours_small / ort_small, "same_predictions": [agree, len(images)]}


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
    parser.add_argument("--gathered", choices=onnx.GATHERED, default="channels",
                        help="how a shape-compacted convolution is exported (minissl.onnx."
                             "to_model): the runtime's Conv over the kept channels (default), "
                             "or the kept patch rows and a MatMul")
    parser.add_argument("--rows", nargs="+", choices=["lenet", "mlp", "convnet", "resnet"],
                        default=["lenet", "mlp", "convnet", "resnet"],
                        help="which models' rows (default: all)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    for name in ("batch", "threads", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def _structures(wanted, seed):
    """(name, sparse model, input shape) of every row of the `wanted` models."""
    for spec in speedup.LENET_ROWS if "lenet" in wanted else []:
        model, shape, _ = speedup.lenet_structure(spec, seed)
        yield f"lenet {spec['name']}", model, shape
    for spec in speedup.MLP_ROWS if "mlp" in wanted else []:
        model, shape, _ = speedup.mlp_structure(spec, seed)
        yield f"mlp {spec['name']}", model, shape
    for spec in CONVNET_ROWS if "convnet" in wanted else []:
        yield (f"convnet {spec['name']}", *convnet_structure(spec, seed))
    if "resnet" in wanted:
        yield ("resnet 20->14", *resnet_structure(seed))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        import onnxruntime
    except ImportError:
        sys.exit("error: this benchmark needs onnx and onnxruntime: pip install -e '.[onnx]'")
    rows = []
    print(f"onnxruntime {onnxruntime.__version__}: {args.threads} intra-op threads, sequential "
          f"execution, all graph optimizations; batch {args.batch}; shape-compacted "
          f"convolutions exported by {args.gathered}")
    print(f"{'row':<12}{'FLOP-ideal':>11}{'ort speedup':>13}{'quartiles':>12}"
          f"{'minissl speedup':>17}{'quartiles':>12}{'minissl / ort':>15}")
    rng = np.random.default_rng(args.seed)
    cifar_images = rng.random((200, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        for name, model, input_shape in _structures(args.rows, args.seed):
            images = (cifar_images if input_shape == (3, 32, 32) else
                      speedup.mnist_test_images(input_shape)[:1000])
            row = time_row(name, model.eval(), input_shape, images, args, Path(folder))
            rows.append(row)
            print(f"{row['row']:<12}{row['flop_ideal']:>10.2f}x{row['ort_speedup']:>12.2f}x"
                  f"{row['ort_iqr'][0]:>7.2f}-{row['ort_iqr'][1]:.2f}"
                  f"{row['minissl_speedup']:>16.2f}x"
                  f"{row['minissl_iqr'][0]:>7.2f}-{row['minissl_iqr'][1]:.2f}"
                  f"{row['minissl_over_ort']:>15.2f}")
    if args.json:
        from minissl.train.records import write_json

        write_json(args.json, {"rows": rows})
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
