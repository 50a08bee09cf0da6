"""MNIST MLP (784-500-300-10): the paper's neuron-wise SSL experiment, end to end.

    python -m demos.mnist_mlp                       # from the checkout
    python -m minissl.experiments mnist_mlp         # from anywhere, once installed
    python -m demos.mnist_mlp --quick               # the same with fewer epochs
    python -m demos.mnist_mlp --from-zoo            # no training: the zoo's rows, in seconds

Each SSL row trains from scratch with the group lasso on the columns W[:, i] of every layer
(all outgoing connections of each input and hidden neuron), applied by the proximal step
after every SGD step. The cosine learning rate decays to 0, so the prox threshold lr * lambda
fades too and late groups stop at tiny norms (docs/design.md, the vanishing threshold): the
reported cut sets groups below --cut to zero, then the network is fine-tuned with them held
at zero. Each SSL model is compacted into smaller dense layers, checked to predict the same
class as the sparse one on every test image, and timed per layer and whole.
Writes <out>/results.json and <out>/sparsity.png.

Measured on 2 cores (docs/journal.md, "MNIST MLP"): the default run took 216 s on a quiet
machine and 390 s with tests running beside it on the full MNIST, 308 s on the bundled
8,000-image sample; --quick took 146 s on the full MNIST and 96 s on the sample.
"""

import numpy as np

from minissl import compact, models, plots, ssl, to_numpy, train
from minissl.experiments import cli, flags
from minissl.ssl import GroupKind
from minissl.train.report import cut_summary, flagged_note, speed_text

# Wen et al. 2016, section 4.1 (MLP on MNIST): error, neurons and FLOP % per layer.
PAPER_ROWS = [
    {"name": "paper baseline", "error": 0.0143, "neurons": [784, 500, 300, 10],
     "flops_pct": [100.0, 100.0, 100.0]},
    {"name": "paper SSL #2", "error": 0.0134, "neurons": [469, 294, 166, 10],
     "flops_pct": [35.18, 32.54, 55.33]},
    {"name": "paper SSL #3", "error": 0.0153, "neurons": [434, 174, 78, 10],
     "flops_pct": [19.26, 9.05, 26.00]},
]
DEFAULT_LAMBDAS = [[7e-3, 5e-3, 4e-3], [1e-2, 7.5e-3, 6e-3]]
EPOCHS = {"epochs": 20, "ssl_epochs": 20, "finetune_epochs": 10}  # for 60,000 images
QUICK_EPOCHS = {"epochs": 3, "ssl_epochs": 8, "finetune_epochs": 2}


def parse_args(argv):
    parser = flags.parser_for(__doc__, "python -m demos.mnist_mlp")
    flags.add_training_arguments(parser, epochs=20, lr=0.1, weight_decay=1e-4, batch_size=100,
                               out="runs/mnist_mlp")
    group = parser.add_argument_group("structured sparsity (SSL rows)")
    group.add_argument("--lambda", dest="lambdas", type=float, nargs=3, action="append",
                       metavar=("L1", "L2", "L3"),
                       help="group-lasso strengths of layers 1-3 for one SSL row; repeat for "
                            f"more rows (default: {DEFAULT_LAMBDAS[0]} and {DEFAULT_LAMBDAS[1]})")
    group.add_argument("--mode", choices=[mode.value for mode in ssl.Mode], default="proximal",
                       help="proximal step (exact zeros, default) or the paper's subgradient")
    flags.add_ssl_schedule_arguments(group, "20, scaled like --epochs", "10, scaled like --epochs",
                                   finetune_lr=0.05)
    flags.add_from_zoo_argument(parser, "mnist_mlp")
    args = parser.parse_args(argv)
    flags.check_from_zoo(parser, vars(args))
    args.lambdas = args.lambdas or DEFAULT_LAMBDAS
    flags.check_ssl_flags(parser, vars(args), [value for row in args.lambdas for value in row])
    return args


def chain_neurons(model):
    """Neurons per layer, input to output, counted as the paper does (nonzero columns)."""
    return ssl.dense_chain_neurons([layer.weight.data for layer in models.linear_layers(model)])


def total_flop_pct(layer_pcts):
    """Remaining FLOPs of the whole MLP in % from per-layer ones (a paper row's), each layer
    weighted by its dense FLOPs as the plan of the dense MLP counts them."""
    dense = [layer.flops_before for layer in compact.plan_compaction(models.mlp()).layers]
    return sum(pct * flops for pct, flops in zip(layer_pcts, dense)) / sum(dense)


def describe_neurons(model):
    """The neurons per layer, as a history field and as text for the epoch line."""
    neurons = chain_neurons(model)
    return {"neurons": neurons}, f"  neurons {'-'.join(map(str, neurons))}"


def ssl_row(trainer, schedule, timing, index, lambdas, mode, prox_lr_floor):
    """Train one SSL row from scratch: prox epochs, the reported cut, masked fine-tuning,
    then compact and time it. Returns the row."""
    model = models.mlp(seed=trainer.data.seed).to_backend()
    rules = ssl.rules_for(model, GroupKind.NEURON_IN, lambdas)
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules, mode=ssl.Mode(mode),
                                                min_prox_lr=prox_lr_floor))
    name = f"SSL {index}"
    outcome = trainer.ssl(model, lasso, name, schedule, describe_neurons,
                          prox_phase=f"{name} ({mode})")
    first_weight = models.linear_layers(model)[0].weight.data
    return {**compacted_fields(name, model, trainer, timing), "lambda": list(lambdas),
            "mode": mode,
            "zero_groups": [{"layer": layer, "zero": zero, "groups": total}
                            for layer, _, zero, total in lasso.zero_group_counts()],
            "cut": {**cut_summary(outcome.cut), "error_before": outcome.error_before_cut,
                    "error_after": outcome.error_after_cut},
            "input_mask": np.any(to_numpy(first_weight) != 0, axis=0)}  # (784,) for the figure


def compacted_fields(name, model, trainer, timing):
    """A sparse MLP's row fields: error, neurons, FLOP % per layer and its compaction report
    (checked predictions, per-layer and whole-network speedups); said in one line."""
    _, compacted = train.compaction_report(model, *trainer.split[2:], timing_config=timing)
    neurons, layer_flops = chain_neurons(model), None
    if compacted is not None:  # count what the compacted model keeps, with the plan's FLOPs
        speeds = ", ".join(speed_text(entry["speedup"], entry["flags"]) + "x"
                           for entry in compacted["layers"])
        print(f"{name} compacted: {compacted['params'][0]:,} -> {compacted['params'][1]:,} "
              f"parameters, same predictions on all {len(trainer.split[3]):,} test images; "
              f"forward speedup per layer {speeds}, whole network "
              f"{speed_text(compacted['whole_speedup'], compacted['whole_flags'])}x")
        kept = compacted["kept"]
        neurons = [kept["0"]["channels"]] + [kept[layer]["filters"] for layer in ("0", "2", "4")]
        layer_flops = [entry["flop_pct"] for entry in compacted["layers"]]
    return {"name": name, "error": trainer.error(model), "neurons": neurons,
            "flops_pct": layer_flops, "compacted": compacted}


def sparse_from_compacted(small):
    """The full 784-500-300-10 MLP computing what a compacted one (Take, Linear, ReLU,
    Linear, ReLU, Linear) computes: its input pixels at the Take's indices, its kept neurons
    first in each hidden layer, every other weight and bias zero. Compacting it gives `small`
    back; the zoo stores its MLP rows compacted, and this is what --from-zoo times them
    against (a dense layer costs the same whatever its zeros)."""
    take, linears = small[0], [small[index] for index in (1, 3, 5)]
    model = models.mlp(seed=0)
    full = models.linear_layers(model)
    for layer in full:
        layer.weight.data[...] = 0
        layer.bias.data[...] = 0
    inputs = np.asarray(take.indices)
    for index, (target, source) in enumerate(zip(full, linears)):
        outs = np.arange(source.out_features) if index < 2 else np.arange(10)
        ins = inputs if index == 0 else np.arange(source.in_features)
        target.weight.data[np.ix_(outs, ins)] = to_numpy(source.weight.data)
        target.bias.data[outs] = to_numpy(source.bias.data)
    return model.to_backend()


def zoo_row(entry, model, info, trainer, timing):
    """--from-zoo: the row of a stored MLP (the dense baseline, or a compacted SSL row timed
    against its full-size equivalent)."""
    if not info.get("compacted"):
        flops = [100.0 * layer.flops_after / layer.flops_before
                 for layer in compact.plan_compaction(model).layers]
        return {"name": f"zoo {entry}", "error": trainer.error(model),
                "neurons": chain_neurons(model), "flops_pct": flops}
    sparse = sparse_from_compacted(model)
    row = compacted_fields(f"zoo {entry}", sparse, trainer, timing)
    row["error"] = trainer.error(model)  # the stored model's own error, which the zoo records
    first_weight = models.linear_layers(sparse)[0].weight.data
    return {**row, "input_mask": np.any(to_numpy(first_weight) != 0, axis=0)}


def baseline_row(trainer, epochs):
    """Train the dense MLP; returns its row."""
    model = models.mlp(seed=trainer.data.seed).to_backend()
    history = trainer.fit(model, "baseline", epochs)
    flops = [100.0 * layer.flops_after / layer.flops_before
             for layer in compact.plan_compaction(model).layers]
    row = {"name": "baseline", "error": trainer.error(model), "neurons": chain_neurons(model),
           "flops_pct": flops}
    print(f"baseline: test error {row['error']:.2%}, "
          f"{np.mean([entry['seconds'] for entry in history]):.1f} s per epoch")
    return row


def print_table(rows):
    """Our rows (FLOP % from the compaction plan; "-" when nothing could be compacted),
    then the paper's (its own FLOP %)."""
    print(f"\n{'row':<18}{'error':>7}   {'neurons':<18}{'FLOP % per layer':<22}"
          f"{'speedup per layer':<22}{'whole':>6}   lambda (layers 1-3)")
    for row in rows + PAPER_ROWS:
        flops = "  ".join(f"{value:5.1f}" for value in row.get("flops_pct") or []) or "-"
        lambdas = ", ".join(f"{value:g}" for value in row.get("lambda", [])) or "-"
        speed, whole, compacted = "-", "-", row.get("compacted")
        if compacted:
            speed = "  ".join(f"{speed_text(entry['speedup'], entry['flags']):>5}"
                              for entry in compacted["layers"])
            whole = speed_text(compacted["whole_speedup"], compacted["whole_flags"])
        print(f"{row['name']:<18}{row['error']:>7.2%}   {'-'.join(map(str, row['neurons'])):<18}"
              f"{flops:<22}{speed:<22}{whole:>6}   {lambdas}")
    if flagged_note(rows):
        print(flagged_note(rows))


def main(argv=None):
    begun = cli.begin("mnist_mlp", parse_args, argv)
    args, record, timing = begun.args, begun.record, begun.timing
    split, facts = cli.mnist_split(cli.load_mnist(args.data, args.offline))
    record.set(dataset=facts, paper_rows=PAPER_ROWS)
    trainer = begun.trainer(split)
    if args.from_zoo:
        cli.zoo_rows(record, "mnist_mlp", ["baseline", "ssl1", "ssl2"],
                     lambda entry, model, info: zoo_row(entry, model, info, trainer, timing))
    else:
        epochs = begun.epochs(len(split[1]), EPOCHS, QUICK_EPOCHS)
        schedule = begun.ssl_schedule(epochs["ssl_epochs"], epochs["finetune_epochs"])
        if not args.no_baseline:
            cli.train_row(record, "baseline", lambda: baseline_row(trainer, epochs["epochs"]))
        for index, lambdas in enumerate(args.lambdas, start=1):
            cli.train_row(record, f"SSL {index}", lambda: ssl_row(
                trainer, schedule, timing, index, lambdas, args.mode, args.prox_lr_floor))
    cli.finish(record, facts, print_table,
               lambda rows: plots.mlp_sparsity_figure(rows, args.out / "sparsity.png"))


if __name__ == "__main__":
    cli.run(main)
