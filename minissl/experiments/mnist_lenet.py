"""MNIST LeNet (Caffe's: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10): the paper's
convolutional MNIST experiments (Wen et al. 2016, section 4.1, Tables 1 and 2).

    python -m demos.mnist_lenet              # baseline + the paper's four SSL rows (#2-#5)
    python -m minissl.experiments mnist_lenet   # the same from anywhere, once installed
    python -m demos.mnist_lenet --quick      # the same with fewer epochs
    python -m demos.mnist_lenet --from-zoo   # no training: the zoo's rows, compacted and timed
    python -m demos.mnist_lenet --rows filters shapes   # only the two milder rows
    python -m demos.mnist_lenet --rows       # baseline only
    python -m demos.mnist_lenet --help

The baseline trains with SGD (momentum 0.9, weight decay 5e-4) and a per-step cosine
learning rate. Each SSL row starts from the trained baseline's weights (--ssl-from-scratch:
from scratch, as without a baseline) with the group lasso applied by the proximal step:
"filters" and "filters-strong" (Table 1, rows #2 and #3) regularize conv1's and conv2's
filters and conv2's input channels, "shapes" and "shapes-strong" (Table 2, rows
#4 and #5) the shape columns (c, kh, kw) of both convs; the strong rows aim at the paper's
sparser rows: filters-strong with larger lambdas, shapes-strong with gentler lambdas over more
prox epochs (--strong-shape-ssl-epochs) and its own fine-tuning rate. Then groups with norm
below --cut (shapes: --shape-cut, shapes-strong: --strong-shape-cut) are zeroed (reported),
the network is fine-tuned with them held at zero, compacted into smaller layers (checked to
predict the same class on every test image) and timed: forward speedup per layer and for the
whole network.
Writes <out>/results.json and <out>/sparsity.png (conv1's filters, conv2's nonzero map and
the speedups, per row).
"""

from dataclasses import replace

from minissl import models, plots, ssl, to_numpy, train
from minissl.experiments import cli, flags
from minissl.ssl import GroupKind, GroupRule
from minissl.train.report import (cut_summary, flagged_note, layer_speed_fields, row_speeds,
                                  rules_summary, speed_text)

# Wen et al. 2016, Tables 1 and 2 (LeNet): structure per conv layer and CPU speedups. Table 2
# gives columns and channels read; conv1 keeps only the 2 (#5: 1) filters conv2 reads, so
# conv1's FLOP is 2/20 x 21/25 = 8.4% (#5: 1/20 x 7/25 = 1.4%).
PAPER_ROWS = [
    {"name": "paper baseline", "error": 0.009, "filters": [20, 50], "channels": [1, 20],
     "columns": [25, 500], "flops_pct": [100.0, 100.0], "speedup": None},
    {"name": "paper #2", "error": 0.008, "filters": [5, 19], "channels": [1, 4],
     "columns": None, "flops_pct": [25.0, 7.6], "speedup": [1.64, 5.23]},
    {"name": "paper #3", "error": 0.010, "filters": [3, 12], "channels": [1, 3],
     "columns": None, "flops_pct": [15.0, 3.6], "speedup": [1.99, 7.44]},
    {"name": "paper #4", "error": 0.008, "filters": None, "channels": [1, 2],
     "columns": [21, 41], "flops_pct": [8.4, 8.2], "speedup": [2.33, 6.93]},
    {"name": "paper #5", "error": 0.010, "filters": None, "channels": [1, 1],
     "columns": [7, 14], "flops_pct": [1.4, 2.8], "speedup": [5.19, 10.82]},
]
# Each SSL row: the paper's row it aims at, its default lambdas, and what it does differently
# from --cut, --ssl-epochs and --finetune-lr. The values were measured from the trained
# baseline (docs/journal.md, "MNIST LeNet": the search behind each of them).
ROWS = {"filters": ("#2", "filter_lambda", (0.035, 0.075, 0.03), {}),
        "filters-strong": ("#3", "strong_filter_lambda", (0.06, 0.17, 0.08), {}),
        "shapes": ("#4", "shape_lambda", (0.025, 0.055), {"cut": 0.01}),
        "shapes-strong": ("#5", "strong_shape_lambda", (0.04, 0.09),
                          {"cut": 0.025, "finetune_lr": 0.03})}
EPOCHS = {"epochs": 6, "ssl_epochs": 6, "finetune_epochs": 4, "strong_shape_ssl_epochs": 12}
QUICK_EPOCHS = {"epochs": 1, "ssl_epochs": 2, "finetune_epochs": 1, "strong_shape_ssl_epochs": 4}
INPUT_SHAPE = (1, 28, 28)
CONV_LAYERS = ("0", "2")
ZOO_ENTRIES = {"baseline": "zoo baseline", "row2": "zoo #2", "row3": "zoo #3", "row4": "zoo #4",
               "row5": "zoo #5"}  # --from-zoo: the stored rows, as trained (sparse)


def parse_args(argv):
    parser = flags.parser_for(__doc__, "python -m demos.mnist_lenet", epilog=False)
    flags.add_training_arguments(parser, epochs=EPOCHS["epochs"], lr=0.05, weight_decay=5e-4,
                               batch_size=100, out="runs/mnist_lenet")
    group = parser.add_argument_group("structured sparsity (SSL rows)")
    group.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS),
                       help="which SSL rows to run (default: all four, the paper's #2-#5; "
                            "none: baseline only)")
    for row, (_, flag, lambdas, _) in ROWS.items():
        names = ("CONV1", "CONV2", "CHANNELS") if len(lambdas) == 3 else ("CONV1", "CONV2")
        group.add_argument(f"--{flag.replace('_', '-')}", type=float, nargs=len(lambdas),
                           default=lambdas, metavar=names,
                           help=f"the {row} row's lambdas: {', '.join(names).lower()} "
                                f"(default {' '.join(map(str, lambdas))})")
    flags.add_ssl_schedule_arguments(group, "6, scaled like --epochs; the shapes-strong row has "
                                          "its own, --strong-shape-ssl-epochs",
                                   "4, scaled like --epochs", finetune_lr=0.02)
    for row, flag, key in (("shapes", "shape-cut", "cut"), ("shapes-strong", "strong-shape-cut", "cut"),
                           ("shapes-strong", "strong-shape-finetune-lr", "finetune_lr")):
        group.add_argument(f"--{flag}", type=float, default=ROWS[row][3][key], metavar="VALUE",
                           help=f"the {row} row's {key.replace('_', ' ')}, in place of "
                                f"--{key.replace('_', '-')} (default {ROWS[row][3][key]:g})")
    group.add_argument("--strong-shape-ssl-epochs", type=int, default=None, metavar="N",
                       help="the shapes-strong row's prox epochs, in place of --ssl-epochs "
                            f"(default {EPOCHS['strong_shape_ssl_epochs']}, scaled like --epochs)")
    flags.add_start_from_baseline_argument(group)
    group.add_argument("--ssl-from-scratch", action="store_true",
                       help="train each SSL row from freshly initialized weights instead of "
                            "from this run's trained baseline (the default; without a "
                            "baseline, --no-baseline, the rows start from scratch)")
    flags.add_from_zoo_argument(parser, "mnist_lenet")
    args = parser.parse_args(argv)
    flags.check_from_zoo(parser, vars(args))
    if args.ssl_from_scratch and args.ssl_from_baseline is not None:
        parser.error("--ssl-from-scratch and --ssl-from-baseline exclude each other")
    if args.ssl_from_baseline is None and not (args.ssl_from_scratch or args.no_baseline):
        args.ssl_from_baseline = ""  # the default: start from this run's baseline
    lambdas = [*args.filter_lambda, *args.strong_filter_lambda, *args.shape_lambda,
               *args.strong_shape_lambda]
    flags.check_ssl_flags(parser, vars(args), lambdas)
    flags.check_flags(parser, vars(args), positive=["strong_shape_finetune_lr",
                                                  "strong_shape_ssl_epochs"],
                    non_negative=["shape_cut", "strong_shape_cut"])
    return args


def conv_structure(model):
    """Per conv layer: nonzero filters, channels and shape columns (rows/columns of W2)."""
    layers = [ssl.weight_sparsity(model[int(name)].weight.data) for name in CONV_LAYERS]
    return {"filters": [layer.nonzero_rows for layer in layers],
            "channels": [layer.nonzero_channels for layer in layers],
            "columns": [layer.nonzero_columns for layer in layers]}


def describe_structure(model):
    """History fields and epoch-line text for an SSL phase."""
    structure = conv_structure(model)
    return structure, "".join(f"{', ' if key != 'filters' else '  '}{key} "
                              f"{' / '.join(map(str, values))}" for key, values in structure.items())


def ssl_rules(row, lambdas):
    """The GroupRules of one SSL row (Table 1: filters and channels; Table 2: shapes)."""
    if row.startswith("filters"):
        conv1, conv2, channels = lambdas
        return [GroupRule("0", GroupKind.FILTER, conv1), GroupRule("2", GroupKind.FILTER, conv2),
                GroupRule("2", GroupKind.CHANNEL, channels)]
    conv1, conv2 = lambdas
    return [GroupRule("0", GroupKind.SHAPE, conv1), GroupRule("2", GroupKind.SHAPE, conv2)]


def result_row(name, model, trainer, timing, rules=(), cut=None):
    """Error, conv structure, compacted FLOPs and measured speedups of a trained LeNet."""
    _, compacted = train.compaction_report(model, *trainer.split[2:], INPUT_SHAPE, timing)
    row = {"name": name, "error": trainer.error(model), **conv_structure(model),
           **layer_speed_fields(compacted, CONV_LAYERS), "rules": rules_summary(rules),
           "conv1": to_numpy(model[0].weight.data), "conv2": to_numpy(model[2].weight.data),
           "compacted": compacted}
    if compacted is not None:
        row["nonzero"] = {key: row[key] for key in ("filters", "channels", "columns")}
        for key in ("filters", "channels", "columns"):
            row[key] = [compacted["kept"][layer][key] for layer in CONV_LAYERS]
        print(f"{name} compacted: {compacted['params'][0]:,} -> {compacted['params'][1]:,} "
              f"parameters, same predictions on all {len(trainer.split[3]):,} test images; "
              f"forward speedup conv1 / conv2 {row_speeds(row, ' / ')}, whole network "
              f"{speed_text(row['whole_speedup'], row['whole_flags'])}x")
    if cut is not None:
        row["cut"] = cut_summary(cut)
    return row


def print_table(rows):
    """Our rows, then the paper's (Tables 1 and 2), per conv layer: "conv1 / conv2"."""
    def pair(values, form="{}"):
        return " / ".join(form.format(value) for value in values) if values else "-"
    print(f"\n{'row':<26}{'error':>7}  {'filters':<10}{'channels':<10}{'columns':<11}"
          f"{'FLOP %':<14}{'speedup':<15}{'whole':>6}")
    for row in rows + PAPER_ROWS:
        print(f"{row['name']:<26}{row['error']:>7.2%}  {pair(row['filters']):<10}"
              f"{pair(row['channels']):<10}{pair(row['columns']):<11}"
              f"{pair(row['flops_pct'], '{:.1f}'):<14}{row_speeds(row, ' / '):<15}"
              f"{speed_text(row.get('whole_speedup'), row.get('whole_flags')):>6}")
    if flagged_note(rows):
        print(flagged_note(rows))


def train_rows(begun, trainer, start):
    """The baseline (unless --no-baseline) and the SSL rows of --rows, trained and added to
    the run's record."""
    args, record, timing = begun.args, begun.record, begun.timing
    epochs = begun.epochs(len(trainer.split[1]), EPOCHS, QUICK_EPOCHS)
    if not args.no_baseline:
        def baseline_row():
            model = cli.model_from(models.lenet, args.seed)
            trainer.fit(model, "baseline", epochs["epochs"])
            start["weights"] = model.state_dict()
            return {**result_row("baseline", model, trainer, timing),
                    "seconds_per_epoch": cli.phase_seconds(record, "baseline")}
        cli.train_row(record, "baseline", baseline_row)
    own = {"shapes": {"cut": args.shape_cut},
           "shapes-strong": {"cut": args.strong_shape_cut, "finetune_lr":
                             args.strong_shape_finetune_lr,
                             "epochs": epochs["strong_shape_ssl_epochs"]}}
    for row in args.rows:
        name = f"SSL {row} ({ROWS[row][0]})"
        lambdas = getattr(args, ROWS[row][1])
        schedule = begun.ssl_schedule(epochs["ssl_epochs"], epochs["finetune_epochs"])

        def ssl_row():
            model = cli.model_from(models.lenet, args.seed,
                                   cli.ssl_start_weights(args.ssl_from_baseline, start))
            rules = ssl_rules(row, lambdas)
            lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules, min_prox_lr=args.prox_lr_floor))
            outcome = trainer.ssl(model, lasso, name, replace(schedule, **own.get(row, {})),
                                  describe_structure)
            return result_row(name, model, trainer, timing, rules, outcome.cut)
        cli.train_row(record, name, ssl_row)


def main(argv=None):
    begun = cli.begin("mnist_lenet", parse_args, argv)
    args, record, timing = begun.args, begun.record, begun.timing
    start = {"weights": cli.baseline_weights(args.ssl_from_baseline, models.lenet)}  # read first
    split, facts = cli.mnist_split(cli.load_mnist(args.data, args.offline), INPUT_SHAPE)
    record.set(dataset=facts, paper_rows=PAPER_ROWS)
    trainer = begun.trainer(split)
    if args.from_zoo:
        cli.zoo_rows(record, "mnist_lenet", list(ZOO_ENTRIES), lambda entry, model, info:
                     result_row(ZOO_ENTRIES[entry], model, trainer, timing))
    else:
        train_rows(begun, trainer, start)
    cli.finish(record, facts, print_table,
               lambda rows: plots.conv_sparsity_figure(rows, args.out / "sparsity.png"))


if __name__ == "__main__":
    cli.run(main)
