"""Print the critical lambda of every residual branch of a zoo ResNet (the table in docs/ssl.md,
"Choosing lambda"): how strong a depth lambda removes each branch, measured before a run.

    MINISSL_DATA=../shared/datasets python scripts/critical_lambdas.py
    python scripts/critical_lambdas.py --entry cifar_resnet/resnet20 --images 1024 \\
        --scales 1 0.5 0.2 --momentum 0.9 --weight-decay 5e-4

Each residual branch is one DEPTH group (as in `python -m demos.cifar_resnet`); for every
scale s, `ssl.critical_lambdas` scales each branch to s of itself in turn and measures the
lambda at which the prox step and the gradient step balance, with the gradient averaged over
`--images` training images picked at random with `--seed` (normalized as the entry's model
expects, no augmentation). Printed as a Markdown table: the branch names (stage.block), their
norms, one row of critical lambdas per scale.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minissl import ssl, zoo  # noqa: E402
from minissl.experiments import cli  # noqa: E402
from minissl.experiments.cifar_resnet import blocks_of, branch_norms, depth_rules  # noqa: E402


def branch_labels(model):
    """"stage.block" (from 1) of every residual branch, in forward order: the first block and
    every block with a projection shortcut (it changes the width and the resolution) open a
    stage."""
    labels, stage, block = [], 0, 0
    for index, (_, module) in enumerate(blocks_of(model)):
        if index == 0 or module.shortcut is not None:
            stage, block = stage + 1, 0
        block += 1
        labels.append(f"{stage}.{block}")
    return labels


def critical_table(model, inputs, labels, scales, momentum, weight_decay):
    """The rows of the table: ("norm", [one float per branch]) and, for each scale,
    (f"critical lambda at scale {s}", [...]). Shapes: inputs (N, 3, H, W) float32, labels (N,)
    int64. The model is as before when it returns (ssl.critical_lambdas)."""
    # the lambda itself does not enter the critical value: any positive one builds the groups
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(depth_rules(model, 1.0)))
    rows = [("norm", branch_norms(model))]
    for scale in scales:
        found = ssl.critical_lambdas(model, lasso, inputs, labels, scale=scale,
                                     momentum=momentum, weight_decay=weight_decay)
        rows.append((f"critical lambda at scale {scale:g}", [float(value) for value in found]))
    return rows


def markdown(names, rows):
    """The table as Markdown lines: a header of branch names, one line per row."""
    lines = ["| branch (stage.block) | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {title} | " + " | ".join(f"{value:.2f}" for value in values) + " |"
              for title, values in rows]
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Print the critical depth lambda of every residual branch of a zoo ResNet "
                    "(docs/ssl.md, 'Choosing lambda').")
    parser.add_argument("--entry", default="cifar_resnet/resnet20",
                        help="a cifar_resnet zoo entry (default cifar_resnet/resnet20)")
    parser.add_argument("--images", type=int, default=1024,
                        help="training images the gradient is averaged over (default 1024)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.2],
                        help="fractions (0, 1] each branch is scaled to (default 1 0.5 0.2)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4,
                        help="weight decay, on the prox's side of the balance (5e-4)")
    parser.add_argument("--seed", type=int, default=0, help="picks the images (default 0)")
    parser.add_argument("--data", type=Path, default=None,
                        help="CIFAR-10 folder (default: $MINISSL_DATA or the cache)")
    args = parser.parse_args(argv)
    if not args.entry.startswith("cifar_resnet/") or args.entry not in zoo.available():
        resnets = [name for name in zoo.available() if name.startswith("cifar_resnet/")]
        parser.error(f"--entry must be one of {', '.join(resnets)}; got {args.entry!r}")
    if args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")
    if any(not 0 < scale <= 1 for scale in args.scales):
        parser.error(f"--scales must each be in (0, 1], got {args.scales}")
    if not 0 <= args.momentum < 1:
        parser.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.weight_decay < 0:
        parser.error(f"--weight-decay must be >= 0, got {args.weight_decay}")
    return args


def main(argv=None):
    args = parse_args(argv)
    model, _ = zoo.load(args.entry)
    (x_train, y_train, _, _), _ = cli.load_cifar_split(
        args.data, False, None, args.seed, False, None, statistics=zoo.normalization(args.entry))
    if args.images > len(y_train):
        sys.exit(f"error: --images {args.images} is more than the {len(y_train):,} training "
                 f"images")
    picked = np.sort(np.random.default_rng(args.seed).choice(len(y_train), args.images,
                                                             replace=False))
    rows = critical_table(model, x_train[picked], y_train[picked], args.scales, args.momentum,
                          args.weight_decay)
    print(f"{args.entry}: {args.images:,} training images (seed {args.seed}), momentum "
          f"{args.momentum:g}, weight decay {args.weight_decay:g}")
    print("\n".join(markdown(branch_labels(model), rows)))


if __name__ == "__main__":
    main()
