"""MNIST MLP (784-500-300-10): the baseline row of the paper's MLP experiment.

    python -m demos.mnist_mlp            # full run on whatever MNIST resolves
    python -m demos.mnist_mlp --quick    # under a minute
    python -m demos.mnist_mlp --help

Trains with SGD (momentum, weight decay, cosine learning rate per step), prints the
test error and seconds per epoch, and writes <out>/results.json.
"""

import argparse
import sys
import time

import numpy as np

from demos import common
from minissl import data, models, optim

PAPER_BASELINE_ERROR = 0.0143  # Wen et al. 2016, MLP table, baseline 784-500-300-10
QUICK_TRAIN_SIZE, QUICK_EPOCHS = 10000, 3


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demos.mnist_mlp", description=__doc__.split("\n\n")[0])
    common.add_training_arguments(parser, epochs=20, lr=0.1, weight_decay=1e-4, batch_size=100,
                                  out="runs/mnist_mlp")
    args = parser.parse_args(argv)
    common.check_positive(parser, args, ["epochs", "batch_size", "lr"])
    if args.quick:
        args.epochs = min(args.epochs, QUICK_EPOCHS)
    return args


def train(model, args, split, history, phase):
    """Train `model` for args.epochs with a cosine schedule; append per-epoch records to history."""
    x_train, y_train, x_test, y_test = split
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    schedule = optim.CosineSchedule(optimizer, total_steps=args.epochs * steps_per_epoch)
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss, train_error = common.train_epoch(model, optimizer, schedule, x_train, y_train,
                                               args.batch_size, rng, f"{phase} {epoch}/{args.epochs}")
        seconds = time.perf_counter() - start
        test_error = common.error_rate(model, x_test, y_test)
        history.append({"phase": phase, "epoch": epoch, "loss": loss, "train_error": train_error,
                        "test_error": test_error, "seconds": seconds})
        print(f"{phase} epoch {epoch:2d}/{args.epochs}: loss {loss:.4f}  train error {train_error:.2%}  "
              f"test error {test_error:.2%}  {seconds:.1f} s")


def prepare_split(dataset, quick):
    """Return (x_train, y_train, x_test, y_test): float32 (N, 784) images, int64 labels."""
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if quick:
        train_images, train_labels = train_images[:QUICK_TRAIN_SIZE], train_labels[:QUICK_TRAIN_SIZE]
    return (data.to_float_images(train_images), train_labels.astype(np.int64),
            data.to_float_images(dataset.test_images), dataset.test_labels.astype(np.int64))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    dataset = common.load_mnist(args.data, args.offline)
    split = prepare_split(dataset, args.quick)
    history = []
    model = models.mlp(seed=args.seed)
    train(model, args, split, history, "baseline")
    error = common.error_rate(model, split[2], split[3])
    seconds = [record["seconds"] for record in history]
    rows = [{"name": "baseline", "error": error,
             "neurons": [layer.in_features for layer in models.linear_layers(model)] + [10]}]
    print(f"\nbaseline test error {error:.2%} (paper: {PAPER_BASELINE_ERROR:.2%}); "
          f"{np.mean(seconds):.1f} s per epoch")
    results = {
        "experiment": "mnist_mlp",
        "dataset": {"name": dataset.name, "source": dataset.source,
                    "n_train": len(split[1]), "n_test": len(split[3])},
        "rows": rows, "epochs": args.epochs, "history": history,
        "wall_time_s": time.perf_counter() - started, "seed": args.seed, "argv": sys.argv,
    }
    common.write_json(args.out / "results.json", results)
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
