"""CIFAR-10 ConvNet (Caffe's cifar10_full without LRN: conv 32@5x5, conv 32@5x5, conv 64@5x5,
pools, fc 10): the paper's row- and column-wise sparsity experiment (Wen et al. 2016,
section 4.2, Table 3).

    python -m demos.cifar_convnet                  # baseline + two SSL rows (see --help for time)
    python -m demos.cifar_convnet --quick          # a 10,000-image subset, few epochs
    python -m demos.cifar_convnet --download       # fetch CIFAR-10 (binary, ~160 MB) first
    python -m demos.cifar_convnet --synthetic 2000 # random images: a smoke test, no data needed
    python -m demos.cifar_convnet --help

The baseline trains with SGD (momentum 0.9, weight decay) and a per-step cosine learning
rate on normalized images with random crops and flips (minissl.augment; --augment flip keeps
only the flips, --augment none neither, as Caffe's cifar10_full). Each SSL row trains from
scratch, or from the trained baseline's weights with --ssl-from-baseline, with the group
lasso on conv1-conv3 applied by the proximal step:
rows of W2 (FILTER groups: whole filters) and columns of W2 (SHAPE groups: one (c, kh, kw)
fiber across all filters), with the lambdas of --rows-lambda and --columns-lambda scaled by
the row's factor (--ssl-scales). Then groups with norm below --cut are zeroed (reported),
the network is fine-tuned with them held at zero, compacted (checked to predict the same
class on every test image) and each conv layer is timed at batch 100.
Prints Table 3 (our rows above the paper's) and writes <out>/results.json and
<out>/filters.png (conv1's filters as RGB tiles, the zero rows and columns of each layer).

Measured on 2 shared cores (docs/results.md): one epoch of 50,000 images took 62-90 s on a
quiet machine in one session and 119-149 s in another, so the default run (12 baseline epochs,
then 10 + 2 per SSL row) takes about 40-60 minutes (up to about 90 on a slower day), and
--quick about 4 minutes (13 on a busy machine); --quick is
too short for the group lasso to remove much: it checks the whole pipeline. The lambdas are
first guesses, not tuned (docs/results.md says what they gave). The paper's Caffe schedule is
much longer (cifar10_full: 60,000 + 5,000 iterations at batch 100, about 130 epochs):
--epochs 130 --ssl-epochs 130 --finetune-epochs 10 follows it.
"""

import argparse
import sys

from demos import common
from minissl import augment, models, plots, ssl, to_numpy
from minissl.ssl import GroupKind, GroupRule

# Wen et al. 2016, Table 3 (ConvNet on CIFAR-10), conv1 / conv2 / conv3, in percent.
PAPER_ROWS = [
    {"name": "paper #1", "error": 0.179, "row_sparsity": [12.5, 0.0, 0.0],
     "column_sparsity": [0.0, 0.0, 0.0], "speedup": [1.00, 1.00, 1.00]},
    {"name": "paper #2", "error": 0.179, "row_sparsity": [50.0, 28.1, 1.6],
     "column_sparsity": [0.0, 59.3, 35.1], "speedup": [1.43, 3.05, 1.57]},
    {"name": "paper #3", "error": 0.169, "row_sparsity": [31.3, 0.0, 1.6],
     "column_sparsity": [0.0, 42.8, 9.8], "speedup": [1.25, 2.01, 1.18]},
]
CONV_LAYERS = ("0", "3", "6")  # conv1, conv2, conv3 in models.cifar_convnet()
INPUT_SHAPE = (3, 32, 32)
DEFAULT_ROW_LAMBDAS = (0.05, 0.04, 0.02)
DEFAULT_COLUMN_LAMBDAS = (0.0, 0.02, 0.015)
EPOCHS = {"epochs": 12, "ssl_epochs": 10, "finetune_epochs": 2}
QUICK_EPOCHS = {"epochs": 2, "ssl_epochs": 2, "finetune_epochs": 1}
QUICK_TRAIN, QUICK_TEST = 10000, 2000


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demos.cifar_convnet",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_training_arguments(parser, epochs=EPOCHS["epochs"], lr=0.01, weight_decay=5e-4,
                                  batch_size=128, out="runs/cifar_convnet", dataset="cifar10")
    parser.add_argument("--augment", choices=sorted(augment.AUGMENTATIONS), default="crop-flip",
                        help="training augmentation: random crops from a 4-pixel pad and flips "
                             "(default), flips only, or none (Caffe's cifar10_full)")
    parser.add_argument("--synthetic", type=int, metavar="N", default=None,
                        help="train on N random CIFAR-shaped images instead of CIFAR-10 (a smoke "
                             "test of the whole pipeline; the errors mean nothing)")
    group = parser.add_argument_group("structured sparsity (SSL rows)")
    group.add_argument("--ssl-scales", type=float, nargs="*", default=[1.0, 2.0],
                       help="one SSL row per factor, each multiplying the lambdas below "
                            "(default: 1 2; none: baseline only)")
    group.add_argument("--rows-lambda", type=float, nargs=3, default=DEFAULT_ROW_LAMBDAS,
                       metavar=("CONV1", "CONV2", "CONV3"),
                       help="row (filter) group lambdas of conv1-conv3 "
                            f"(default {' '.join(map(str, DEFAULT_ROW_LAMBDAS))})")
    group.add_argument("--columns-lambda", type=float, nargs=3, default=DEFAULT_COLUMN_LAMBDAS,
                       metavar=("CONV1", "CONV2", "CONV3"),
                       help="column (shape) group lambdas of conv1-conv3 "
                            f"(default {' '.join(map(str, DEFAULT_COLUMN_LAMBDAS))})")
    common.add_ssl_schedule_arguments(group, EPOCHS["ssl_epochs"], EPOCHS["finetune_epochs"],
                                      finetune_lr=0.002)
    common.add_start_from_baseline_argument(group)
    args = parser.parse_args(argv)
    lambdas = list(args.rows_lambda) + list(args.columns_lambda) + list(args.ssl_scales)
    common.check_ssl_schedule(parser, args, lambdas)
    if args.synthetic is not None and args.synthetic < 20:
        parser.error("--synthetic needs at least 20 images")
    return args


def conv_structure(model):
    """Per conv layer: row (filter) and column (shape) sparsity of W2, in percent."""
    layers = [ssl.weight_sparsity(model[int(name)].weight.data) for name in CONV_LAYERS]
    return {"row_sparsity": [100.0 * (1 - layer.nonzero_rows / layer.rows) for layer in layers],
            "column_sparsity": [100.0 * (1 - layer.nonzero_columns / layer.columns)
                                for layer in layers],
            "filters": [layer.nonzero_rows for layer in layers],
            "columns": [layer.nonzero_columns for layer in layers]}


def describe_structure(model):
    """History fields and epoch-line text for an SSL phase."""
    structure = conv_structure(model)
    text = (f"  rows {'-'.join(f'{value:.0f}%' for value in structure['row_sparsity'])} zero, "
            f"columns {'-'.join(f'{value:.0f}%' for value in structure['column_sparsity'])} zero")
    return structure, text


def ssl_rules(args, scale):
    """FILTER (row) and SHAPE (column) rules on conv1-conv3, lambdas times `scale`."""
    rules = []
    for layer, row_lambda, column_lambda in zip(CONV_LAYERS, args.rows_lambda, args.columns_lambda):
        if row_lambda > 0:
            rules.append(GroupRule(layer, GroupKind.FILTER, row_lambda * scale))
        if column_lambda > 0:
            rules.append(GroupRule(layer, GroupKind.SHAPE, column_lambda * scale))
    return rules


def result_row(name, model, split, rules=(), cut=None):
    """Error, row/column sparsity, compacted FLOPs and measured speedups of a trained ConvNet."""
    _, compacted = common.compaction_report(model, split[2], split[3], INPUT_SHAPE)
    row = {"name": name, "error": common.error_rate(model, split[2], split[3]),
           **conv_structure(model), "flops_pct": None, "speedup": None, "whole_speedup": None,
           "conv1": to_numpy(model[0].weight.data),
           "weights2": [to_numpy(model[int(layer)].weight.data) for layer in CONV_LAYERS],
           "compacted": compacted,
           "rules": [{"layer": rule.layer, "kind": rule.kind.value, "lambda": rule.strength}
                     for rule in rules]}
    if compacted is not None:
        by_layer = {entry["layer"]: entry for entry in compacted["layers"]}
        row["flops_pct"] = [by_layer[layer]["flop_pct"] for layer in CONV_LAYERS]
        row["speedup"] = [by_layer[layer]["speedup"] for layer in CONV_LAYERS]
        row["speedup_flags"] = [by_layer[layer]["flags"] for layer in CONV_LAYERS]
        row["whole_speedup"] = compacted["whole_speedup"]
        row["whole_flags"] = compacted["whole_flags"]
        speeds = "-".join(common.speed_text(value, flags) + "x"
                          for value, flags in zip(row["speedup"], row["speedup_flags"]))
        print(f"{name} compacted: same predictions on all {len(split[3]):,} test images; "
              f"forward speedup conv1-conv3 {speeds}, whole network "
              f"{common.speed_text(row['whole_speedup'], row['whole_flags'])}x "
              f"(batch {compacted['batch']})")
    if cut is not None:
        row["cut"] = {"threshold": cut.threshold, "groups_zeroed": cut.groups_zeroed,
                      "largest_norm_zeroed": cut.largest_norm_zeroed}
    return row


def print_table(rows):
    """Table 3: our rows, then the paper's, per conv layer (conv1 / conv2 / conv3)."""
    def triple(values, form):
        return " / ".join(form.format(value) for value in values) if values else "-"
    print(f"\n{'row':<14}{'error':>7}  {'row sparsity %':<22}{'column sparsity %':<22}"
          f"{'FLOP %':<22}{'speedup':<22}{'whole':>6}")
    for row in rows + PAPER_ROWS:
        error = f"{row['error']:.2%}" if row["error"] is not None else "-"
        whole = common.speed_text(row.get("whole_speedup"), row.get("whole_flags"))
        speeds = common.row_speeds(row, " / ")
        print(f"{row['name']:<14}{error:>7}  {triple(row['row_sparsity'], '{:.1f}'):<22}"
              f"{triple(row['column_sparsity'], '{:.1f}'):<22}"
              f"{triple(row.get('flops_pct'), '{:.1f}'):<22}{speeds:<22}{whole:>6}")
    common.flagged_note(rows)


def baseline_row(args, split, record, start):
    """Train the dense ConvNet; returns its row. Its final weights go into start["weights"]
    (what --ssl-from-baseline starts the SSL rows from)."""
    model = models.cifar_convnet(seed=args.seed).to_backend()
    common.train_phase(model, args, split, record, "baseline", args.epochs, args.lr,
                       augment=augment.AUGMENTATIONS[args.augment])
    start["weights"] = model.state_dict()
    seconds = common.phase_seconds(record, "baseline")
    print(f"baseline: test error {common.error_rate(model, split[2], split[3]):.2%}, "
          f"{seconds:.1f} s per epoch")
    return {**result_row("baseline", model, split), "seconds_per_epoch": seconds}


def ssl_row(args, split, record, name, rules, weights=None):
    """Train one SSL row (prox epochs, cut, fine-tuning), compact and time it; from
    `weights` (a state dict: the trained baseline) when given, else from scratch."""
    model = models.cifar_convnet(seed=args.seed)
    if weights is not None:
        model.load_state_dict(weights)
    model = model.to_backend()
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules, min_prox_lr=args.prox_lr_floor))
    cut, _, _ = common.ssl_phases(model, lasso, args, split, record, name,
                                  describe_structure,
                                  augment=augment.AUGMENTATIONS[args.augment])
    return result_row(name, model, split, rules, cut)


def train_rows(args, split, record, start):
    """The baseline (unless --no-baseline) and one SSL row per --ssl-scales factor, each
    added to `record` as it finishes. `start` holds the weights SSL rows start from
    (--ssl-from-baseline DIR; filled by the baseline otherwise)."""
    if not args.no_baseline:
        common.train_row(record, "baseline", lambda: baseline_row(args, split, record, start))
    for scale in args.ssl_scales:
        rules = ssl_rules(args, scale)
        if not rules:
            print(f"note: SSL x{scale:g} has no group with a positive lambda; skipped")
            continue
        name = f"SSL x{scale:g}"
        common.train_row(record, name,
                         lambda: ssl_row(args, split, record, name, rules,
                                         common.ssl_start_weights(args, start)))


def main(argv=None):
    argv = common.resumed_argv(sys.argv[1:] if argv is None else list(argv), "cifar_convnet")
    args = parse_args(argv)
    args.argv = argv
    record = common.start_run(args, "cifar_convnet")
    start = common.baseline_start(args)  # --ssl-from-baseline DIR: read before any training
    split, facts = common.load_cifar_split(args, QUICK_TRAIN, QUICK_TEST)
    # the --quick subset keeps its few epochs: no scaling to the full set's number of steps
    common.fill_epoch_defaults(args, 50000, EPOCHS, QUICK_EPOCHS, full_size=50000)
    record.set(dataset=facts, paper_rows=PAPER_ROWS)
    train_rows(args, split, record, start)
    rows = common.trained_rows(record.rows)
    figure = None
    if rows:
        print_table(rows)
        # the weights (conv1, weights2) go into the figure; results.json keeps the numbers
        figure = plots.cifar_filters_figure(rows, args.out / "filters.png")
    common.write_results(record, facts, figure, paper_rows=PAPER_ROWS)


if __name__ == "__main__":
    common.run(main)
