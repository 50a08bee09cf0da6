"""CIFAR-10 ConvNet (Caffe's cifar10_full without LRN: conv 32@5x5, conv 32@5x5, conv 64@5x5,
pools, fc 10): the paper's row- and column-wise sparsity experiment (Wen et al. 2016,
section 4.2, Table 3).

    python -m demos.cifar_convnet                  # baseline + two SSL rows (see --help for time)
    python -m minissl.experiments cifar_convnet    # the same from anywhere, once installed
    python -m demos.cifar_convnet --quick          # SSL from the zoo's baseline on a subset
    python -m demos.cifar_convnet --from-zoo       # no training: the zoo's trained rows
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

--quick trains on the first 10,000 training images and tests on the first 2,000. When the
model zoo holds the trained baseline (cifar_convnet/baseline), --quick takes it instead of
training one and starts both SSL rows from it, with lambdas strong enough for its 2 + 1
epochs (--rows-lambda / --columns-lambda say which): measured on 2 quiet cores
(2026-12-02) it took 231 s, and SSL x1 zeroed 44% of conv2's columns (conv2 1.58x faster,
the whole network 1.17x) and SSL x2 80% and 41% of its rows (conv2 5.58x, whole 2.17x), at
24.9% and 43.8% error on the subset against the baseline's 17.9%: a cost a full run does not
pay. Without the zoo's baseline --quick trains one for 2 epochs on the subset, too short for
the group lasso to remove much.

Measured on 2 shared cores (docs/journal.md): one epoch of 50,000 images took 62-90 s on a
quiet machine in one session and 119-149 s in another, so the default run (12 baseline epochs,
then 10 + 2 per SSL row) takes about 40-60 minutes (up to about 90 on a slower day). The
default lambdas are first guesses, not tuned (docs/journal.md says what they gave). The
paper's Caffe schedule is much longer (cifar10_full: 60,000 + 5,000 iterations at batch 100,
about 130 epochs): --epochs 130 --ssl-epochs 130 --finetune-epochs 10 follows it.
"""

from minissl import augment, models, plots, ssl, to_numpy, train, zoo
from minissl.experiments import cli, flags
from minissl.ssl import GroupKind, GroupRule
from minissl.train.report import (cut_summary, flagged_note, layer_speed_fields, row_speeds,
                                  rules_summary, speed_text)

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
# --quick from the zoo's baseline: 158 prox steps instead of 3,910 (2 epochs of 10,000
# images), so that the proximal step can take groups of that baseline's size (conv2's
# columns have norms of 0.25-0.39, 10th to 90th percentile) to zero within them.
QUICK_ZOO_BASELINE = "cifar_convnet/baseline"
QUICK_ROW_LAMBDAS = DEFAULT_ROW_LAMBDAS
QUICK_COLUMN_LAMBDAS = (0.0, 0.4, 0.2)
# (flag, its defaults, its defaults under --quick from the zoo's baseline)
LAMBDA_FLAGS = (("rows", DEFAULT_ROW_LAMBDAS, QUICK_ROW_LAMBDAS),
                ("columns", DEFAULT_COLUMN_LAMBDAS, QUICK_COLUMN_LAMBDAS))
EPOCHS = {"epochs": 12, "ssl_epochs": 10, "finetune_epochs": 2}
QUICK_EPOCHS = {"epochs": 2, "ssl_epochs": 2, "finetune_epochs": 1}
QUICK_TRAIN, QUICK_TEST = 10000, 2000
ZOO_ENTRIES = {"baseline": "zoo #1 base", "row2": "zoo #2", "row3": "zoo #3"}  # --from-zoo


def parse_args(argv):
    parser = flags.parser_for(__doc__, "python -m demos.cifar_convnet")
    flags.add_training_arguments(parser, epochs=EPOCHS["epochs"], lr=0.01, weight_decay=5e-4,
                               batch_size=128, out="runs/cifar_convnet", dataset="cifar10")
    parser.add_argument("--augment", choices=sorted(augment.AUGMENTATIONS), default="crop-flip",
                        help="training augmentation: random crops from a 4-pixel pad and flips "
                             "(default), flips only, or none (Caffe's cifar10_full)")
    group = parser.add_argument_group("structured sparsity (SSL rows)")
    group.add_argument("--ssl-scales", type=float, nargs="*", default=[1.0, 2.0],
                       help="one SSL row per factor, each multiplying the lambdas below "
                            "(default: 1 2; none: baseline only)")
    for kind, defaults, quick in LAMBDA_FLAGS:
        group.add_argument(f"--{kind}-lambda", type=float, nargs=3, default=None,
                           metavar=("CONV1", "CONV2", "CONV3"),
                           help=f"{kind[:-1]} ({'filter' if kind == 'rows' else 'shape'}) group "
                                f"lambdas of conv1-conv3 (default {' '.join(map(str, defaults))}"
                                + (f"; --quick from the zoo's baseline: {' '.join(map(str, quick))}"
                                   if quick != defaults else "") + ")")
    flags.add_ssl_schedule_arguments(group, EPOCHS["ssl_epochs"], EPOCHS["finetune_epochs"],
                                   finetune_lr=0.002)
    flags.add_start_from_baseline_argument(group)
    flags.add_from_zoo_argument(parser, "cifar_convnet")
    args = parser.parse_args(argv)
    flags.check_from_zoo(parser, vars(args))
    args.quick_from_zoo = quick_from_zoo(args)
    for kind, defaults, quick in LAMBDA_FLAGS:
        if getattr(args, f"{kind}_lambda") is None:
            setattr(args, f"{kind}_lambda", list(quick if args.quick_from_zoo else defaults))
    lambdas = list(args.rows_lambda) + list(args.columns_lambda) + list(args.ssl_scales)
    flags.check_ssl_flags(parser, vars(args), lambdas)
    if args.synthetic is not None and args.synthetic < 20:
        parser.error("--synthetic needs at least 20 images")
    return args


def quick_from_zoo(args):
    """Whether this --quick run starts its SSL rows from the zoo's trained baseline instead of
    training one on the subset (which leaves SSL nothing to remove in a few epochs): on the
    real CIFAR-10, with a baseline row, no --ssl-from-baseline of its own, and the zoo holding
    that baseline."""
    return bool(args.quick and args.synthetic is None and not args.no_baseline
                and args.ssl_from_baseline is None and QUICK_ZOO_BASELINE in zoo.available())


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


def ssl_rules(rows_lambda, columns_lambda, scale):
    """FILTER (row) and SHAPE (column) rules on conv1-conv3, lambdas times `scale`."""
    rules = []
    for layer, row_lambda, column_lambda in zip(CONV_LAYERS, rows_lambda, columns_lambda):
        if row_lambda > 0:
            rules.append(GroupRule(layer, GroupKind.FILTER, row_lambda * scale))
        if column_lambda > 0:
            rules.append(GroupRule(layer, GroupKind.SHAPE, column_lambda * scale))
    return rules


def result_row(name, model, trainer, timing, rules=(), cut=None):
    """Error, row/column sparsity, compacted FLOPs and measured speedups of a trained ConvNet."""
    _, compacted = train.compaction_report(model, *trainer.split[2:], INPUT_SHAPE, timing)
    row = {"name": name, "error": trainer.error(model), **conv_structure(model),
           **layer_speed_fields(compacted, CONV_LAYERS), "rules": rules_summary(rules),
           "conv1": to_numpy(model[0].weight.data),
           "weights2": [to_numpy(model[int(layer)].weight.data) for layer in CONV_LAYERS],
           "compacted": compacted}
    if compacted is not None:
        print(f"{name} compacted: same predictions on all {len(trainer.split[3]):,} test images; "
              f"forward speedup conv1 / conv2 / conv3 {row_speeds(row, ' / ')}, whole network "
              f"{speed_text(row['whole_speedup'], row['whole_flags'])}x")
    if cut is not None:
        row["cut"] = cut_summary(cut)
    return row


def print_table(rows):
    """Table 3: our rows, then the paper's, per conv layer (conv1 / conv2 / conv3)."""
    def triple(values, form="{:.1f}"):
        return " / ".join(form.format(value) for value in values) if values else "-"
    print(f"\n{'row':<14}{'error':>7}  {'row sparsity %':<22}{'column sparsity %':<22}"
          f"{'FLOP %':<22}{'speedup':<22}{'whole':>6}")
    for row in rows + PAPER_ROWS:
        whole = speed_text(row.get("whole_speedup"), row.get("whole_flags"))
        print(f"{row['name']:<14}{row['error']:>7.2%}  {triple(row['row_sparsity']):<22}"
              f"{triple(row['column_sparsity']):<22}{triple(row.get('flops_pct')):<22}"
              f"{row_speeds(row, ' / '):<22}{whole:>6}")
    if flagged_note(rows):
        print(flagged_note(rows))


def train_rows(begun, trainer, start):
    """The baseline (unless --no-baseline) and one SSL row per --ssl-scales factor, trained
    and added to the run's record."""
    args, record, timing = begun.args, begun.record, begun.timing
    # the --quick subset keeps its few epochs: no scaling to the full set's number of steps
    epochs = begun.epochs(50000, EPOCHS, QUICK_EPOCHS, full_size=50000)
    schedule = begun.ssl_schedule(epochs["ssl_epochs"], epochs["finetune_epochs"])
    from_baseline = args.ssl_from_baseline
    if args.quick_from_zoo:
        model, info = zoo.load(QUICK_ZOO_BASELINE)
        print(f"--quick: the baseline is the zoo's {QUICK_ZOO_BASELINE} (trained by: "
              f"{info['command']}; {info['error']:.2%} on the full test set), measured here on "
              f"the subset; the SSL rows start from it with the lambdas of --quick")
        start["weights"], from_baseline = model.state_dict(), ""
        cli.train_row(record, "baseline (zoo)", lambda: result_row(
            "baseline (zoo)", model.to_backend(), trainer, timing))
    elif not args.no_baseline:
        def baseline_row():
            model = cli.model_from(models.cifar_convnet, args.seed)
            trainer.fit(model, "baseline", epochs["epochs"])
            start["weights"] = model.state_dict()
            return {**result_row("baseline", model, trainer, timing),
                    "seconds_per_epoch": cli.phase_seconds(record, "baseline")}
        cli.train_row(record, "baseline", baseline_row)
    for scale in args.ssl_scales:
        rules, name = ssl_rules(args.rows_lambda, args.columns_lambda, scale), f"SSL x{scale:g}"
        if not rules:
            print(f"note: {name} has no group with a positive lambda; skipped")
            continue

        def ssl_row():
            model = cli.model_from(models.cifar_convnet, args.seed,
                                   cli.ssl_start_weights(from_baseline, start))
            lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules, min_prox_lr=args.prox_lr_floor))
            outcome = trainer.ssl(model, lasso, name, schedule, describe_structure)
            return result_row(name, model, trainer, timing, rules, outcome.cut)
        cli.train_row(record, name, ssl_row)


def main(argv=None):
    begun = cli.begin("cifar_convnet", parse_args, argv)
    args, record, timing = begun.args, begun.record, begun.timing
    # read and checked before any training
    start = {"weights": cli.baseline_weights(args.ssl_from_baseline, models.cifar_convnet)}
    statistics = zoo.normalization(QUICK_ZOO_BASELINE) if args.quick_from_zoo else None
    split, facts = cli.load_cifar_split(args.data, args.download, args.synthetic, args.seed,
                                        args.quick, (QUICK_TRAIN, QUICK_TEST), statistics)
    record.set(dataset=facts, paper_rows=PAPER_ROWS)
    trainer = begun.trainer(split, augment.AUGMENTATIONS[args.augment])
    if args.from_zoo:
        cli.zoo_rows(record, "cifar_convnet", list(ZOO_ENTRIES), lambda entry, model, info:
                     result_row(ZOO_ENTRIES[entry], model, trainer, timing))
    else:
        train_rows(begun, trainer, start)
    # the weights (conv1, weights2) go into the figure; results.json keeps the numbers
    cli.finish(record, facts, print_table,
               lambda rows: plots.cifar_filters_figure(rows, args.out / "filters.png"),
               paper_rows=PAPER_ROWS)


if __name__ == "__main__":
    cli.run(main)
