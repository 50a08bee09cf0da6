"""MNIST LeNet (Caffe's: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10): the dense
baseline of the paper's convolutional MNIST experiments (Wen et al. 2016, section 4.1).

    python -m demos.mnist_lenet            # the baseline on whatever MNIST resolves
    python -m demos.mnist_lenet --quick    # one epoch (about 20 s on 2 cores)
    python -m demos.mnist_lenet --help

Trains with SGD (momentum 0.9, weight decay 5e-4) and a per-step cosine learning rate,
prints the test error and seconds per epoch after every epoch, then a table with the
conv layers' filters and FLOPs. Writes <out>/results.json.
"""

import argparse
import sys
import time

import numpy as np

from demos import common
from minissl import data, models, nn, ssl

PAPER_BASELINE_ERROR = 0.009  # Wen et al. 2016, Table 1, LeNet baseline
EPOCHS = {"epochs": 6}
QUICK_EPOCHS = {"epochs": 1}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demos.mnist_lenet",
                                     description=__doc__.split("\n\n")[0])
    common.add_training_arguments(parser, epochs=EPOCHS["epochs"], lr=0.05, weight_decay=5e-4,
                                  batch_size=100, out="runs/mnist_lenet")
    args = parser.parse_args(argv)
    given = ["epochs"] if args.epochs is not None else []
    common.check_positive(parser, args, given + ["batch_size", "lr"])
    return args


def prepare_split(dataset):
    """Return (x_train, y_train, x_test, y_test): float32 (N, 1, 28, 28) images, int64 labels."""
    def images(raw):
        return data.to_float_images(raw).reshape(-1, 1, 28, 28)  # (N, 784) -> (N, 1, 28, 28)
    return (images(dataset.train_images), dataset.train_labels.astype(np.int64),
            images(dataset.test_images), dataset.test_labels.astype(np.int64))


def layer_table(model):
    """Per conv layer: nonzero filters and channels, and the remaining FLOP %."""
    rows = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d):
            sparsity = ssl.weight_sparsity(layer.weight.data)
            rows.append({"layer": name, "filters": sparsity.nonzero_rows,
                         "channels": sparsity.nonzero_channels, "flops_pct": sparsity.flops_pct})
    return rows


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    common.use_backend(args.backend)
    started = time.perf_counter()
    dataset = common.load_mnist(args.data, args.offline)
    split = prepare_split(dataset)
    factor = common.fill_epoch_defaults(args, len(split[1]), EPOCHS, QUICK_EPOCHS)
    if factor > 1:
        print(f"note: {len(split[1]):,} training images instead of 60,000: the default epoch count "
              f"is multiplied by {factor} to keep the full run's number of SGD steps")
    history = []
    model = models.lenet(seed=args.seed).to_backend()
    common.train_phase(model, args, split, history, "baseline", args.epochs, args.lr)
    error = common.error_rate(model, split[2], split[3])
    seconds = float(np.mean([record["seconds"] for record in history]))
    layers = layer_table(model)
    print(f"\n{'row':<16}{'error':>7}   {'filters per conv':<18}{'s/epoch':>8}")
    print(f"{'baseline':<16}{error:>7.2%}   {'-'.join(str(layer['filters']) for layer in layers):<18}"
          f"{seconds:>8.1f}")
    print(f"{'paper baseline':<16}{PAPER_BASELINE_ERROR:>7.2%}   {'20-50':<18}{'-':>8}")
    results = {
        "experiment": "mnist_lenet",
        "dataset": {"name": dataset.name, "source": dataset.source,
                    "n_train": len(split[1]), "n_test": len(split[3])},
        "rows": [{"name": "baseline", "error": error, "layers": layers,
                  "seconds_per_epoch": seconds}],
        "epochs": args.epochs, "history": history, "lr": args.lr, "batch_size": args.batch_size,
        "wall_time_s": time.perf_counter() - started, "seed": args.seed, "argv": sys.argv,
    }
    common.write_json(args.out / "results.json", results)
    print(f"wrote {args.out / 'results.json'} ({results['wall_time_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
