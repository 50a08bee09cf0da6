"""AlexNet-sized conv layers: speedup of compaction against row and column sparsity.

    python -m benchmarks.speedup --paper alexnet                    # batch 1, the sweep below
    python -m benchmarks.speedup --paper alexnet --batch 4 --json alexnet.json

No training and no data: each of AlexNet's five conv layers at its ImageNet shape (Krizhevsky
et al. 2012, the single-tower CaffeNet shapes, without the two-group split of conv2, conv4
and conv5) gets random weights, then a share of its groups is zeroed: whole filters (rows of
W2, FILTER groups) or whole shape columns (one (c, kh, kw) fiber of every filter, SHAPE
groups). minissl.compact builds the smaller layer (a 1x1 conv after it reads every output,
so that zero filters are removed as in a network) and minissl.timing times the layer dense,
compacted and as CSR (scipy.sparse, the same nonzeros) side by side on a random input.
The paper reports about 5.1x average layer-wise CPU speedup of AlexNet's conv layers for its
sparsest model (Wen et al. 2016, section 4.3); this prints the sparsity at which the average
over the five layers passes that.
"""

import numpy as np

from minissl import Tensor, compact, nn, timing

# name, input channels, filters, kernel, stride, padding, input height = width
LAYERS = [
    ("conv1", 3, 96, 11, 4, 0, 227),
    ("conv2", 96, 256, 5, 1, 2, 27),
    ("conv3", 256, 384, 3, 1, 1, 13),
    ("conv4", 384, 384, 3, 1, 1, 13),
    ("conv5", 384, 256, 3, 1, 1, 13),
]
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
KINDS = ("rows", "columns")
PAPER_AVERAGE_SPEEDUP = 5.1


def sparse_layer(spec, kind, sparsity, rng):
    """Sequential(conv, ReLU, 1x1 conv) with `sparsity` of the conv's rows or columns zero;
    returns (model, input shape)."""
    name, c_in, c_out, kernel, stride, padding, size = spec
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, rng=rng)
    w2 = conv.weight.data.reshape(c_out, -1)  # (N, C*KH*KW) view
    if kind == "rows":
        dropped = rng.permutation(c_out)[:int(round(sparsity * c_out))]
        w2[dropped] = 0
        conv.bias.data[dropped] = 0
    else:
        w2[:, rng.permutation(w2.shape[1])[:int(round(sparsity * w2.shape[1]))]] = 0
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(c_out, 8, 1, rng=rng)).eval()
    return model, (c_in, size, size)


def time_point(spec, kind, sparsity, batch, args):
    rng = np.random.default_rng(args.seed)
    model, input_shape = sparse_layer(spec, kind, sparsity, rng)
    _, plan = compact.compact(model, input_shape)
    x = Tensor(rng.random((batch,) + input_shape).astype(np.float32))
    speed = timing.layer_speed("0", model[0], plan, x, repeats=args.repeats, warmup=1,
                               min_seconds=args.min_seconds, burst_seconds=args.burst_ms / 1e3)
    return {"layer": spec[0], "kind": kind, "sparsity": sparsity, "batch": batch,
            **{key: value for key, value in speed.summary().items() if key != "layer"}}


def run(args):
    """Time the sweep and print it; returns the points (dicts) for --json."""
    batch = args.batch or 1
    print(f"AlexNet conv layers at batch {batch}: speedup = dense time / compacted time, "
          f"CSR = dense time / scipy CSR time, ideal = 1 / FLOP fraction")
    print(f"{'layer':<7}{'kind':<9}{'sparsity':>9}{'FLOP %':>8}{'speedup':>9}{'ideal':>8}"
          f"{'CSR':>7}{'struct/CSR':>11}")
    points = []
    for kind in KINDS:
        for spec in LAYERS:
            for sparsity in args.sparsities:
                point = time_point(spec, kind, sparsity, batch, args)
                points.append(point)
                mark = "?" if point["flags"] else " "
                print(f"{point['layer']:<7}{kind:<9}{100 * sparsity:>8.0f}%"
                      f"{point['flop_pct']:>8.1f}{point['speedup']:>8.2f}{mark}"
                      f"{point['ideal_speedup']:>8.2f}{point['csr_speedup']:>7.2f}"
                      f"{point['speedup'] / point['csr_speedup']:>11.1f}")
    print_summary(points, args.sparsities)
    return points


def print_summary(points, sparsities):
    """The average layer-wise speedup per kind and sparsity, and where it passes the paper's."""
    print(f"\naverage layer-wise speedup over the five conv layers (paper: about "
          f"{PAPER_AVERAGE_SPEEDUP}x for its sparsest AlexNet)")
    for kind in KINDS:
        averages = {s: float(np.mean([p["speedup"] for p in points
                                      if p["kind"] == kind and p["sparsity"] == s]))
                    for s in sparsities}
        text = "  ".join(f"{100 * s:.0f}%: {value:.2f}x" for s, value in averages.items())
        passing = [s for s, value in averages.items() if value >= PAPER_AVERAGE_SPEEDUP]
        verdict = (f"passes {PAPER_AVERAGE_SPEEDUP}x from {100 * min(passing):.0f}% {kind} "
                   f"sparsity" if passing else f"does not reach {PAPER_AVERAGE_SPEEDUP}x here")
        print(f"{kind:<8} {text}\n         {verdict}")
        sparse = [(p["speedup"] / p["csr_speedup"], p["layer"]) for p in points
                  if p["kind"] == kind and p["sparsity"] >= 0.8]
        if sparse:
            worst = min(sparse)
            print(f"         structured vs CSR at >= 80% sparsity: at least {worst[0]:.1f}x "
                  f"({worst[1]})")


def figure(points, path):
    """Speedup against sparsity, one panel per kind, a line per layer; the FLOP-ideal dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    for index, kind in enumerate(KINDS):
        axes = fig.add_subplot(1, 2, index + 1)
        for name, *_ in LAYERS:
            mine = [p for p in points if p["kind"] == kind and p["layer"] == name]
            axes.plot([100 * p["sparsity"] for p in mine], [p["speedup"] for p in mine],
                      marker="o", label=name)
        ideal = sorted({(p["sparsity"], p["ideal_speedup"]) for p in points
                        if p["kind"] == kind and p["layer"] == "conv3"})
        axes.plot([100 * s for s, _ in ideal], [v for _, v in ideal], "k--", lw=1,
                  label="ideal (conv3)")
        axes.axhline(PAPER_AVERAGE_SPEEDUP, color="grey", lw=0.8, ls=":")
        axes.set_yscale("log")
        axes.set_xlabel(f"{kind} sparsity (%)")
        axes.set_ylabel("speedup (dense / compacted)")
        axes.set_title(f"AlexNet conv layers, zero {kind}")
        axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
