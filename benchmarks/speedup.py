"""Speedup of compacted layers: dense vs compacted vs unstructured (CSR), per layer and
for the whole network, on the paper's structures (Wen et al. 2016, Tables 1 and 2).

    python -m benchmarks.speedup --paper lenet            # LeNet rows #2-#5
    python -m benchmarks.speedup --paper mlp              # MLP 469-294-166 and 434-174-78
    python -m benchmarks.speedup --paper lenet --json lenet.json
    python -m benchmarks.speedup --paper alexnet          # AlexNet's conv layers, a sparsity sweep
    python -m benchmarks.speedup --help

No training: a LeNet (or MLP) with random weights gets exactly the paper's structure by
zeroing groups (filters, channels, shape columns, neurons), is compacted with
minissl.compact, and each layer's forward pass is timed dense (zeros and all), compacted,
and as CSR (scipy.sparse, same nonzeros), at batch 100 and batch 1. Each time is the median
of repeated samples after warm-up, dense and compacted timed side by side in alternating
rounds, each sample a burst of back-to-back calls of one layer (--burst-ms; minissl.timing).
Efficiency = speedup / (1 / FLOP fraction): 1.0 means the speedup the FLOPs promise.
GEMM = the speedup of the layer's matrix product alone (patch matrix built beforehand):
what compaction shrinks, without the im2col pass and the per-call costs of a whole layer.
path = the inference path of the dense / compacted conv layer, each picked by timing both
(im2col + BLAS "gemm", or the per-image tile kernel "tiles"; minissl.timing.tune_convolutions).
"""

import argparse
import json
import sys

import numpy as np

from benchmarks import alexnet
from minissl import Tensor, compact, data, models, no_grad, timing
from minissl.atomic import atomic_file

# Wen et al. 2016: LeNet structures (filters, channels of conv2, shape columns) and the CPU
# speedups the paper measured for conv1 / conv2 (Table 1 rows #2, #3; Table 2 rows #4, #5).
LENET_ROWS = [
    {"name": "#2", "filters": (5, 19), "conv2_channels": 4, "paper_speedup": (1.64, 5.23),
     "paper_flop_pct": (25.0, 7.6)},
    {"name": "#3", "filters": (3, 12), "conv2_channels": 3, "paper_speedup": (1.99, 7.44),
     "paper_flop_pct": (15.0, 3.6)},
    # Table 2: conv1 keeps only the filters conv2 reads ("channels 1-2": 2 filters, 1 in #5)
    {"name": "#4", "columns": (21, 41), "conv1_filters": 2, "paper_speedup": (2.33, 6.93),
     "paper_flop_pct": (8.4, 8.2)},
    {"name": "#5", "columns": (7, 14), "conv1_filters": 1, "paper_speedup": (5.19, 10.82),
     "paper_flop_pct": (1.4, 2.8)},
]
MLP_ROWS = [{"name": "#2", "neurons": (469, 294, 166)}, {"name": "#3", "neurons": (434, 174, 78)}]
LAYER_LABELS = {"lenet": {"0": "conv1", "2": "conv2"},
                "mlp": {"0": "fc1", "2": "fc2", "4": "fc3"}}  # module index -> the paper's name


def zero_filters(layer, keep):
    layer.weight.data[keep:] = 0
    layer.bias.data[keep:] = 0


def lenet_structure(row, seed):
    """A random LeNet with exactly the row's zero groups."""
    model = models.lenet(seed=seed)
    conv1, conv2 = model[0], model[2]
    rng = np.random.default_rng(seed)
    if "filters" in row:
        zero_filters(conv1, row["filters"][0])
        zero_filters(conv2, row["filters"][1])
        conv2.weight.data[:, row["conv2_channels"]:] = 0  # channels beyond the kept ones
    else:
        filters = row["conv1_filters"]
        zero_filters(conv1, filters)
        for layer, keep in zip((conv1, conv2), row["columns"]):
            columns = layer.weight.data.reshape(layer.weight.shape[0], -1)  # (N, C*KH*KW) view
            # conv1 reads its one input channel; conv2 only the channels of conv1's kept filters
            channels = layer.weight.shape[1] if layer is conv1 else filters
            columns[:, ~spread_columns(rng, layer.weight.shape, keep, channels)] = 0
    return model, (1, 28, 28), ["0", "2"]


def spread_columns(rng, shape, keep, channels):
    """A mask of `keep` random shape columns among the first `channels` input channels,
    touching as many of them as possible, so that (as in the paper's Table 2) no kept filter
    of the previous layer loses all its readers."""
    window = shape[2] * shape[3]
    if keep > channels * window:
        raise ValueError(f"{keep} columns do not fit in {channels} channels of {window} taps")
    mask = np.zeros(shape[1] * window, dtype=bool)
    for channel in rng.permutation(channels)[:keep]:  # one column in each of `keep` channels
        mask[channel * window + rng.integers(window)] = True
    allowed = np.flatnonzero(~mask[:channels * window])
    mask[rng.permutation(allowed)[:keep - mask.sum()]] = True
    return mask


def mlp_structure(row, seed):
    """A random MLP whose input, first and second hidden layers keep the row's neurons."""
    model = models.mlp(seed=seed)
    rng = np.random.default_rng(seed)
    kept_inputs, hidden1, hidden2 = row["neurons"]
    model[0].weight.data[:, rng.permutation(784)[kept_inputs:]] = 0
    for layer, keep, size in ((model[0], hidden1, 500), (model[2], hidden2, 300)):
        dropped = rng.permutation(size)[keep:]
        layer.weight.data[dropped] = 0
        layer.bias.data[dropped] = 0
    return model, (784,), ["0", "2", "4"]


def mnist_test_images(input_shape):
    """MNIST test images (all 10,000 when found locally, else the bundled sample's 2,000)."""
    try:
        dataset = data.mnist(download=False)
    except data.DataError:
        dataset = data.mnist_sample()
    return data.to_float_images(dataset.test_images).reshape((-1,) + tuple(input_shape))


def same_predictions(model, small, images):
    """Count the test images on which the compacted model predicts the sparse model's class."""
    agree = 0
    with no_grad():
        for start in range(0, len(images), 1000):
            batch = Tensor(images[start:start + 1000])
            agree += int((model(batch).data.argmax(1) == small(batch).data.argmax(1)).sum())
    return agree


def time_row(row, structure, batch, args, images):
    model, input_shape, layer_names = structure(row, args.seed)
    model.eval()
    small, plan = compact.compact(model, input_shape)
    agree = same_predictions(model, small, images)
    if agree != len(images):
        raise RuntimeError(f"row {row['name']}: compacted model disagrees on "
                           f"{len(images) - agree} images")
    rng = np.random.default_rng(args.seed)
    x = Tensor(rng.random((batch,) + input_shape).astype(np.float32))
    speeds = timing.layer_speeds(model, plan, x, layer_names, args.repeats,
                                 min_seconds=args.min_seconds,
                                 burst_seconds=args.burst_ms / 1e3)
    paper = row.get("paper_speedup", (None,) * len(layer_names))
    paper_flops = row.get("paper_flop_pct", (None,) * len(layer_names))
    layers = [{**speed.summary(), "layer": LAYER_LABELS[args.paper][speed.layer],
               "module": speed.layer, "paper_flop_pct": paper_flops[position],
               "paper_speedup": paper[position]} for position, speed in enumerate(speeds)]
    whole = timing.network_speedup(model, small, x, args.repeats, min_seconds=args.min_seconds)
    return {"name": row["name"], "batch": batch, "layers": layers, "whole_speedup": whole,
            "same_predictions": f"{agree}/{len(images)}",
            "shapes": {plan_row.name: plan_row.shape_after for plan_row in plan.layers}}


def print_rows(rows):
    print(f"{'row':<5}{'layer':<7}{'kept shape':<14}{'FLOP %':>7}{'speedup':>9}{'ideal':>8}"
          f"{'effic.':>8}{'GEMM':>7}{'CSR':>7}{'struct/CSR':>11}{'paper FLOP %':>13}"
          f"{'paper speedup':>14}  path")
    for row in rows:
        for entry in row["layers"]:
            shape = "x".join(map(str, row["shapes"][entry["module"]]))
            paper = f"{entry['paper_speedup']:.2f}" if entry["paper_speedup"] else "-"
            paper_flops = f"{entry['paper_flop_pct']:.1f}" if entry["paper_flop_pct"] else "-"
            print(f"{row['name']:<5}{entry['layer']:<7}{shape:<14}"
                  f"{entry['flop_pct']:>7.1f}"
                  f"{entry['speedup']:>8.2f}{'?' if entry['flags'] else ' '}"
                  f"{entry['ideal_speedup']:>8.2f}"
                  f"{entry['efficiency']:>8.2f}{entry['gemm_speedup']:>7.2f}"
                  f"{entry['csr_speedup']:>7.2f}"
                  f"{entry['speedup'] / entry['csr_speedup']:>11.1f}{paper_flops:>13}{paper:>14}"
                  f"  {'/'.join(entry['paths']) if any(entry['paths']) else '-'}")
        print(f"{row['name']:<5}{'whole network':<28}{row['whole_speedup']:>18.2f}   "
              f"(same predictions as the sparse model on {row['same_predictions']} test images)")
    if any(entry["flags"] for row in rows for entry in row["layers"]):
        print("? = a speedup the FLOPs cannot explain (above its FLOP-ideal, or an unchanged "
              "layer off 1.00x): machine noise, not a result; --json keeps its flags")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speedup",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", choices=["lenet", "mlp", "alexnet"], default="lenet",
                        help="which paper structures to build and time (default lenet); "
                             "alexnet: a row/column sparsity sweep of its five conv layers "
                             "(benchmarks/alexnet.py)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of the main table (default 100; batch 1 is also "
                             "timed); for alexnet the only batch (default 1)")
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(alexnet.SPARSITIES),
                        help="alexnet: the row and column sparsities to time, in [0, 1) "
                             f"(default {' '.join(map(str, alexnet.SPARSITIES))})")
    parser.add_argument("--figure", type=str, default="runs/alexnet_speedup.png",
                        help="alexnet: where to save the speedup-vs-sparsity figure "
                             "(default runs/alexnet_speedup.png)")
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed calls per measurement after warm-up (default 30)")
    parser.add_argument("--min-seconds", type=float, default=0.2,
                        help="keep repeating each measurement for at least this long (default 0.2)")
    parser.add_argument("--burst-ms", type=float, default=1e3 * timing.BURST_SECONDS,
                        help="each timed sample is a burst of back-to-back calls of one layer "
                             "lasting about this long, its mean per call (default "
                             f"{1e3 * timing.BURST_SECONDS:g}; 0: single calls, each right after "
                             "another layer's, as before 2026-11-28)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if (args.batch is not None and args.batch < 1) or args.repeats < 1:
        parser.error("--batch and --repeats must be >= 1")
    if args.burst_ms < 0:
        parser.error("--burst-ms must be >= 0")
    if not all(0 <= value < 1 for value in args.sparsities):
        parser.error("--sparsities must lie in [0, 1)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.paper == "alexnet":
        points = alexnet.run(args)
        from pathlib import Path

        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {alexnet.figure(points, args.figure)}")
        if args.json:
            with atomic_file(args.json) as handle:
                json.dump({"paper": "alexnet", "points": points}, handle, indent=2)
            print(f"wrote {args.json}")
        return
    args.batch = args.batch or 100
    if args.paper == "lenet":
        specs, structure = LENET_ROWS, lenet_structure
    else:
        specs, structure = MLP_ROWS, mlp_structure
    results = []
    images = mnist_test_images((1, 28, 28) if args.paper == "lenet" else (784,))
    for batch in dict.fromkeys((args.batch, 1)):
        rows = [time_row(spec, structure, batch, args, images) for spec in specs]
        print(f"\n{args.paper}, batch {batch} (speedup = dense time / compacted time; "
              f"CSR = dense time / scipy CSR time)")
        print_rows(rows)
        results += rows
    if args.paper == "lenet":
        print("\nnote: FLOP % is what the compactor kept. Where a layer reads fewer channels than"
              " the previous layer has filters (#2: conv2 reads 4 of conv1's 5), the unread"
              " filters go too, so conv1 is smaller than in the paper's table, which counts"
              " them. #4 and #5 keep 2 and 1 conv1 filters, as Table 2's \"channels 1-2\" and"
              " \"1-1\" say.")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"paper": args.paper, "rows": results}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
