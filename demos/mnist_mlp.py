"""MNIST MLP (784-500-300-10): the paper's neuron-wise SSL experiment, end to end.

    python -m demos.mnist_mlp            # baseline + two SSL rows on whatever MNIST resolves
    python -m demos.mnist_mlp --quick    # the same with fewer epochs
    python -m demos.mnist_mlp --help

Measured on 2 cores (docs/results.md, "MNIST MLP"): the default run took 216 s on a quiet
machine and 390 s with tests running beside it on the full MNIST, 308 s on the bundled
8,000-image sample; --quick took 146 s on the full MNIST and 96 s on the sample.

Each SSL row trains from scratch with the group lasso on the columns W[:, i] of every
layer (all outgoing connections of each input and hidden neuron), applied by the
proximal step after every SGD step; the cosine learning rate decays to 0, so the prox
threshold lr * lambda fades too and late groups stop at tiny norms (DESIGN.md, the
trap). minissl handles this with an explicit cut, reported in the output: groups with
norm below --cut are set to zero, then the network is fine-tuned with those groups held
at zero. Each SSL model is then compacted into smaller dense layers (minissl.compact); the
demo checks that the compacted model predicts the same class as the sparse one on every
test image and prints the measured forward speedup per layer and for the whole network.
Writes <out>/results.json and <out>/sparsity.png.
"""

import argparse
import sys

import numpy as np

from demos import common
from minissl import compact, data, models, plots, ssl, to_numpy
from minissl.ssl import GroupKind

# Wen et al. 2016, section 4.1 (MLP on MNIST; DESIGN.md): error, neurons and FLOP % per layer.
PAPER_ROWS = [
    {"name": "paper baseline", "error": 0.0143, "neurons": [784, 500, 300, 10],
     "flops_pct": [100.0, 100.0, 100.0]},
    {"name": "paper SSL #2", "error": 0.0134, "neurons": [469, 294, 166, 10],
     "flops_pct": [35.18, 32.54, 55.33]},
    {"name": "paper SSL #3", "error": 0.0153, "neurons": [434, 174, 78, 10],
     "flops_pct": [19.26, 9.05, 26.00]},
]
DEFAULT_LAMBDAS = [[7e-3, 5e-3, 4e-3], [1e-2, 7.5e-3, 6e-3]]
# Epoch counts for the full MNIST (60,000 training images): (baseline, SSL, fine-tune).
FULL_TRAIN_SIZE = 60000
EPOCHS = {"epochs": 20, "ssl_epochs": 20, "finetune_epochs": 10}
QUICK_EPOCHS = {"epochs": 3, "ssl_epochs": 8, "finetune_epochs": 2}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demos.mnist_mlp", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_training_arguments(parser, epochs=20, lr=0.1, weight_decay=1e-4, batch_size=100,
                                  out="runs/mnist_mlp")
    group = parser.add_argument_group("structured sparsity (SSL rows)")
    group.add_argument("--lambda", dest="lambdas", type=float, nargs=3, action="append",
                       metavar=("L1", "L2", "L3"),
                       help="group-lasso strengths of layers 1-3 for one SSL row; repeat for more rows "
                            f"(default: {DEFAULT_LAMBDAS[0]} and {DEFAULT_LAMBDAS[1]})")
    group.add_argument("--ssl-epochs", type=int, default=None,
                       help="epochs with the prox step (default 20, scaled like --epochs)")
    group.add_argument("--finetune-epochs", type=int, default=None,
                       help="epochs of fine-tuning with zero groups held at zero (default 10, scaled like "
                            "--epochs; 0 skips)")
    group.add_argument("--finetune-lr", type=float, default=0.05, help="fine-tuning learning rate (default 0.05)")
    group.add_argument("--cut", type=float, default=1e-3,
                       help="after the SSL epochs, zero the groups with norm below this (default 1e-3)")
    group.add_argument("--mode", choices=[mode.value for mode in ssl.Mode], default="proximal",
                       help="proximal step (exact zeros, default) or the paper's subgradient")
    common.add_prox_floor_argument(group)
    group.add_argument("--no-baseline", action="store_true", help="skip the dense baseline row")
    args = parser.parse_args(argv)
    args.lambdas = args.lambdas or DEFAULT_LAMBDAS
    common.check_ssl_schedule(parser, args, [value for row in args.lambdas for value in row])
    return args


def fill_epoch_defaults(args, n_train):
    """Set missing epoch counts, scaled up on a smaller training set (common.fill_epoch_defaults)."""
    return common.fill_epoch_defaults(args, n_train, EPOCHS, QUICK_EPOCHS, FULL_TRAIN_SIZE)


def describe_neurons(model):
    """The neurons per layer, as a history field and as text for the epoch line."""
    neurons = chain_neurons(model)
    return {"neurons": neurons}, f"  neurons {'-'.join(map(str, neurons))}"


def chain_neurons(model):
    """Neurons per layer, input to output, counted as the paper does (nonzero columns)."""
    return ssl.dense_chain_neurons([layer.weight.data for layer in models.linear_layers(model)])


def plan_flops_pct(model):
    """Remaining FLOPs per layer in %, from the compaction plan (the one FLOP counter)."""
    return [100.0 * layer.flops_after / layer.flops_before
            for layer in compact.plan_compaction(model).layers]


def total_flop_pct(layer_pcts):
    """Remaining FLOPs of the whole MLP in % from per-layer ones (a paper row's), each layer
    weighted by its dense FLOPs as the plan of the dense MLP counts them."""
    dense = [layer.flops_before for layer in compact.plan_compaction(models.mlp()).layers]
    return sum(pct * flops for pct, flops in zip(layer_pcts, dense)) / sum(dense)


def ssl_row(args, split, record, index, lambdas):
    """Train one SSL row: prox epochs, the reported cut, masked fine-tuning. Returns the row."""
    model = models.mlp(seed=args.seed).to_backend()
    config = ssl.SSLConfig(ssl.rules_for(model, GroupKind.NEURON_IN, lambdas), mode=ssl.Mode(args.mode),
                           min_prox_lr=args.prox_lr_floor)
    lasso = ssl.GroupLasso(model, config)
    name = f"SSL {index}"
    cut, error_before_cut, error_after_cut = common.ssl_phases(
        model, lasso, args, split, record, name,
        describe_neurons, ssl_phase=f"{name} ({args.mode})")
    neurons, layer_flops = chain_neurons(model), None
    _, compacted = common.compaction_report(model, split[2], split[3])
    if compacted is not None:
        speeds = ", ".join(common.speed_text(entry["speedup"], entry["flags"]) + "x"
                           for entry in compacted["layers"])
        print(f"{name} compacted: {compacted['params'][0]:,} -> {compacted['params'][1]:,} "
              f"parameters, same predictions on all {len(split[3]):,} test images; forward "
              f"speedup per layer {speeds}, whole network "
              f"{common.speed_text(compacted['whole_speedup'], compacted['whole_flags'])}x "
              f"(batch {compacted['batch']})")
    if compacted is not None:  # count what the compacted model keeps, with the plan's FLOPs
        kept = compacted["kept"]
        neurons = [kept["0"]["channels"]] + [kept[layer]["filters"] for layer in ("0", "2", "4")]
        layer_flops = [entry["flop_pct"] for entry in compacted["layers"]]
    first_weight = models.linear_layers(model)[0].weight.data
    zero_groups = [{"layer": layer, "zero": zero, "groups": total}
                   for layer, _, zero, total in lasso.zero_group_counts()]
    return {"name": name, "error": common.error_rate(model, split[2], split[3]),
            "neurons": neurons, "flops_pct": layer_flops, "lambda": list(lambdas),
            "mode": args.mode, "zero_groups": zero_groups, "compacted": compacted,
            "cut": {"threshold": cut.threshold, "groups_zeroed": cut.groups_zeroed,
                    "largest_norm_zeroed": cut.largest_norm_zeroed,
                    "error_before": error_before_cut, "error_after": error_after_cut},
            "input_mask": np.any(to_numpy(first_weight) != 0, axis=0)}  # (784,) bool, for the figure


def print_table(rows):
    """Print the paper-style table: our rows (FLOP % from the compaction plan; "-" when
    nothing could be compacted), then the paper's (its own FLOP %)."""
    print(f"\n{'row':<18}{'error':>7}   {'neurons':<18}{'FLOP % per layer':<22}"
          f"{'speedup per layer':<22}{'whole':>6}   lambda (layers 1-3)")
    for row in rows + PAPER_ROWS:
        flops = "  ".join(f"{value:5.1f}" for value in row.get("flops_pct") or []) or "-"
        lambdas = ", ".join(f"{value:g}" for value in row.get("lambda", [])) or "-"
        speed, whole = "-", "-"
        if row.get("compacted"):
            speed = "  ".join(f"{common.speed_text(entry['speedup'], entry['flags']):>5}"
                              for entry in row["compacted"]["layers"])
            whole = common.speed_text(row["compacted"]["whole_speedup"],
                                      row["compacted"]["whole_flags"])
        print(f"{row['name']:<18}{row['error']:>7.2%}   {'-'.join(map(str, row['neurons'])):<18}"
              f"{flops:<22}{speed:<22}{whole:>6}   {lambdas}")
    common.flagged_note(rows)


def prepare_split(dataset):
    """Return (x_train, y_train, x_test, y_test): float32 (N, 784) images, int64 labels."""
    return (data.to_float_images(dataset.train_images), dataset.train_labels.astype(np.int64),
            data.to_float_images(dataset.test_images), dataset.test_labels.astype(np.int64))


def baseline_row(args, split, record):
    """Train the dense MLP; returns its row."""
    model = models.mlp(seed=args.seed).to_backend()
    common.train_phase(model, args, split, record, "baseline", args.epochs, args.lr)
    row = {"name": "baseline", "error": common.error_rate(model, split[2], split[3]),
           "neurons": chain_neurons(model), "flops_pct": plan_flops_pct(model)}
    print(f"baseline: test error {row['error']:.2%}, "
          f"{common.phase_seconds(record, 'baseline'):.1f} s per epoch")
    return row


def main(argv=None):
    argv = common.resumed_argv(sys.argv[1:] if argv is None else list(argv), "mnist_mlp")
    args = parse_args(argv)
    args.argv = argv
    record = common.start_run(args, "mnist_mlp")
    dataset = common.load_mnist(args.data, args.offline)
    split = prepare_split(dataset)
    fill_epoch_defaults(args, len(split[1]))
    facts = {"name": dataset.name, "source": dataset.source, "n_train": len(split[1]),
             "n_test": len(split[3])}
    record.set(dataset=facts)
    if not args.no_baseline:
        common.train_row(record, "baseline", lambda: baseline_row(args, split, record))
    for index, lambdas in enumerate(args.lambdas, start=1):
        common.train_row(record, f"SSL {index}",
                         lambda: ssl_row(args, split, record, index, lambdas))
    rows = common.trained_rows(record.rows)
    figure = None
    if rows:
        print_table(rows)
        figure = plots.mlp_sparsity_figure(rows, args.out / "sparsity.png")
    common.write_results(record, facts, figure)


if __name__ == "__main__":
    common.run(main)
