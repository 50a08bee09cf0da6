"""CIFAR-10 ResNet (He et al. 2016: 3 stages of n residual blocks, depth 6n + 2): the paper's
depth-wise sparsity experiment (Wen et al. 2016, section 4.3, Figure 6).

    python -m demos.cifar_resnet                   # ResNet-20 baseline + one SSL-ResNet row
    python -m minissl.experiments cifar_resnet     # the same from anywhere, once installed
    python -m demos.cifar_resnet --depth 32        # ResNet-32
    python -m demos.cifar_resnet --quick           # a 4,000-image subset, one epoch per phase
    python -m demos.cifar_resnet --synthetic 1000  # random images: a smoke test, no data needed
    python -m demos.cifar_resnet --from-zoo        # no training: the zoo's trained rows
    python -m demos.cifar_resnet --no-baseline --ssl-from-baseline zoo:cifar_resnet/resnet20
    python -m demos.cifar_resnet --help

The baseline trains with SGD (momentum 0.9, weight decay 1e-4) and a per-step cosine
learning rate on normalized images with random crops and flips. The SSL row trains from
scratch (or, with --ssl-from-baseline, from a trained ResNet) with a DEPTH group on every
residual branch (its two convolutions and BatchNorms, never the shortcut), applied by the
proximal step with --depth-lambda; branches whose norm ends below --cut are zeroed
(reported), the rest is fine-tuned with them held at zero, and the network is compacted: a
zero branch leaves relu(shortcut(x)), so its block becomes that (checked to predict the same
class on every test image) and the whole network is timed at batch 100. Prints the layers
per stage (32x32, 16x16, 8x8 output maps) and the error of ours and the paper's, and writes
<out>/results.json and <out>/depth.png (error against layers).

Measured on 2 shared cores (docs/journal.md): --quick took 202 s on the real CIFAR-10 (its
epochs of 4,000 images 27-29 s), and with its own depth lambda (7: one prox epoch has 32
steps) it removed the first stage's three blocks: SSL-ResNet-14, 0-6-6 layers per stage, the
whole network 1.56x faster; its errors (68-76% after one epoch) mean nothing. SSL epochs of
all 50,000 images took 224-260 s each with the machine to themselves (606-679 s before the
2026-11-28 engine changes), so the default run (12 baseline epochs, then 10 + 2 for the SSL
row: the same budget) takes about 1.5-2 hours. Its defaults (lambda 0.15, prox floor 0.01)
removed three blocks: SSL-ResNet-14 at 14.40% against ResNet-20's 14.74% (lambda 0.1 without
the floor removed one: SSL-ResNet-18, 13.66%).
A longer baseline: --epochs 40 --weight-decay 5e-4 --depth-lambda 0 reached 8.95% (7,351 s
on a 2-core AMD EPYC VM; 30 epochs gave 9.56%); the zoo holds it (cifar_resnet/resnet20).
He et al.'s schedule is 64,000 iterations at batch 128 (about 164 epochs): --epochs 164
--ssl-epochs 164 --finetune-epochs 20 follows it.
"""

import functools

import numpy as np

from minissl import augment, models, nn, plots, ssl, to_numpy, train
from minissl.experiments import cli, flags
from minissl.ssl import GroupKind, GroupRule
from minissl.train.report import cut_summary, flagged_note, rules_summary, speed_text

# Wen et al. 2016, Figure 6: ResNet and SSL-ResNet on CIFAR-10 (# = conv layers + the fc).
PAPER_POINTS = [
    {"name": "paper ResNet-20", "layers": 20, "error": 0.0882},
    {"name": "paper SSL-ResNet-14", "layers": 14, "error": 0.0854},
    {"name": "paper ResNet-32", "layers": 32, "error": 0.0751},
    {"name": "paper SSL-ResNet-18", "layers": 18, "error": 0.0740},
]
INPUT_SHAPE = (3, 32, 32)
EPOCHS = {"epochs": 12, "ssl_epochs": 10, "finetune_epochs": 2}  # baseline: the SSL row's 10 + 2
QUICK_EPOCHS = {"epochs": 1, "ssl_epochs": 1, "finetune_epochs": 1}
QUICK_TRAIN, QUICK_TEST = 4000, 1000  # 5,000 took 318 s, over --quick's 5 minutes
# Sized from the prox budget: each step shrinks a branch's group norm by at most lr_t * lambda
# (proximal step of the group lasso), and a cosine schedule from lr 0.1 over 10 epochs of
# 391 steps sums to sum(lr_t) = 195.5. The branches start with norms of 9.8 / 13.8 / 19.6
# (stages 1 / 2 / 3, resnet_cifar(20, seed=0)). 0.02 (a budget of 3.9) could zero no branch.
# With 0.06 (11.7), the first epoch (a budget of 2.3) took the norms to 8.1-9.0 / 11.8-12.3 /
# 17.3-17.6: the later stages shrank at nearly the full rate (their convolutions feed
# BatchNorms, so only the second BatchNorm's scale and shift resist), the first at a third to
# two thirds of it, which would leave every branch standing after 10 epochs. 0.1 (19.5)
# removed one block: the cosine schedule leaves almost no prox step for the last epochs, and a
# second branch stalled at a norm of 0.3. 0.15 with a floor of 0.01 on the prox step's learning
# rate (at least 0.59 of shrink per epoch) removed three (docs/journal.md).
DEFAULT_DEPTH_LAMBDA = 0.15
# --quick: one prox epoch of 4,000 images is 32 steps of a cosine from lr 0.1, a budget of
# sum(max(lr_t, floor)) * lambda = 1.6 * lambda. 7 (11.3) is past the first stage's branch
# norms at initialization (9.8) and short of the second's (13.8): the quick run removes the
# first stage's blocks, as a full run removes blocks, in a minute instead of hours.
QUICK_DEPTH_LAMBDA = 7.0
DEFAULT_PROX_LR_FLOOR = 0.01


def zoo_entries(depth):
    """--from-zoo: the zoo entries of a ResNet depth, in table order (baseline first)."""
    return [f"resnet{depth}", f"ssl_resnet{depth}"]


def parse_args(argv):
    parser = flags.parser_for(__doc__, "python -m demos.cifar_resnet")
    flags.add_training_arguments(parser, epochs=EPOCHS["epochs"], lr=0.1, weight_decay=1e-4,
                               batch_size=128, out="runs/cifar_resnet", dataset="cifar10")
    parser.add_argument("--depth", type=int, default=20,
                        help="ResNet depth 6n + 2: 20 (default), 32, 44, 56, ...")
    group = parser.add_argument_group("structured sparsity (the SSL-ResNet row)")
    group.add_argument("--depth-lambda", type=float, default=None,
                       help=f"lambda of every residual branch's group (default "
                            f"{DEFAULT_DEPTH_LAMBDA}, --quick {QUICK_DEPTH_LAMBDA}; 0: baseline "
                            f"only)")
    flags.add_ssl_schedule_arguments(group, EPOCHS["ssl_epochs"], EPOCHS["finetune_epochs"],
                                   finetune_lr=0.01, prox_lr_floor=DEFAULT_PROX_LR_FLOOR)
    flags.add_start_from_baseline_argument(group)
    flags.add_from_zoo_argument(parser, "cifar_resnet (the rows of --depth)")
    args = parser.parse_args(argv)
    flags.check_from_zoo(parser, vars(args))
    if args.depth_lambda is None:
        args.depth_lambda = QUICK_DEPTH_LAMBDA if args.quick else DEFAULT_DEPTH_LAMBDA
    flags.check_ssl_flags(parser, vars(args), [args.depth_lambda])
    if args.depth < 8 or (args.depth - 2) % 6:
        parser.error(f"--depth must be 6n + 2 (20, 32, 44, ...), got {args.depth}")
    if args.synthetic is not None and args.synthetic < 20:
        parser.error("--synthetic needs at least 20 images")
    return args


def blocks_of(model):
    """(name, BasicBlock) for every residual block of the model, in forward order."""
    return [(str(index), module) for index, module in enumerate(model)
            if isinstance(module, nn.BasicBlock)]


def branch_norms(model):
    """The L2 norm of every residual branch's parameters (its DEPTH group), in forward order."""
    return [float(np.sqrt(sum(float((to_numpy(parameter.data).astype(np.float64) ** 2).sum())
                              for parameter in block.branch.parameters())))
            for _, block in blocks_of(model)]


def layers_per_stage(model, norms=None):
    """Convolutions left in each stage: 2 per residual block whose branch is not all zero
    (`norms`: branch_norms(model), when already computed)."""
    norms = branch_norms(model) if norms is None else norms
    per_stage = len(norms) // 3
    return [2 * sum(norm > 0 for norm in norms[stage * per_stage:(stage + 1) * per_stage])
            for stage in range(3)]


def describe_depth(model, cut=0.0):
    """History fields and epoch-line text for an SSL phase: the layers left per stage, each
    stage's smallest branch norm (how close the next branch is to being removed) and, with a
    `cut`, how many live branches are below it: a branch the prox step holds at zero is pushed
    out again by every gradient step, so it is counted alive at a norm of 1e-7 until the cut
    after the prox epochs sets it to exactly zero."""
    norms = branch_norms(model)
    stages, per_stage = layers_per_stage(model, norms), len(norms) // 3
    smallest = [min(norms[stage * per_stage:(stage + 1) * per_stage]) for stage in range(3)]
    below = sum(0 < norm < cut for norm in norms)
    text = (f"  layers per stage {'-'.join(map(str, stages))}  smallest branch norm per stage "
            + "/".join(f"{norm:.3g}" for norm in smallest))
    if below:
        text += f"  ({below} below the cut {cut:g})"
    return {"layers_per_stage": stages, "branch_norms": norms, "below_cut": below}, text


def result_row(name, model, trainer, timing, rules=(), cut=None):
    """Error, layers per stage, compaction and whole-network speedup of a trained ResNet."""
    _, compacted = train.compaction_report(model, *trainer.split[2:], INPUT_SHAPE, timing)
    stages = layers_per_stage(model)
    row = {"name": name, "error": trainer.error(model),
           "layers_per_stage": stages, "layers": sum(stages) + 2,  # + first conv and the fc
           "whole_speedup": compacted["whole_speedup"] if compacted else None,
           "whole_flags": compacted["whole_flags"] if compacted else [],
           "compacted": compacted, "rules": rules_summary(rules)}
    if compacted is not None:
        print(f"{name} compacted: {compacted['params'][0]:,} -> {compacted['params'][1]:,} "
              f"parameters, same predictions on all {len(trainer.split[3]):,} test images; whole "
              f"network {speed_text(compacted['whole_speedup'], compacted['whole_flags'])}x "
              f"faster (batch {compacted['batch']})")
    if cut is not None:
        row["cut"] = cut_summary(cut)
    return row


def print_table(rows, depth):
    print(f"\n{'row':<22}{'error':>7}  {'layers':>6}  {'layers per stage':<18}{'whole speedup':>14}")
    for row in rows:
        stages = "-".join(map(str, row["layers_per_stage"]))
        whole = speed_text(row.get("whole_speedup"), row.get("whole_flags"))
        print(f"{row['name']:<22}{row['error']:>7.2%}  {row['layers']:>6}  {stages:<18}{whole:>14}")
    for point in PAPER_POINTS:
        print(f"{point['name']:<22}{point['error']:>7.2%}  {point['layers']:>6}  {'-':<18}"
              f"{'-':>14}")
    print(f"(ours: ResNet-{depth}; # layers = convolutions on the main path + the first conv "
          f"and the fc, as in the paper)")
    if flagged_note(rows):
        print(flagged_note(rows))


def depth_rules(model, depth_lambda):
    """One DEPTH group per residual branch (its convolutions and BatchNorms, never the
    shortcut), each with `depth_lambda`."""
    return [GroupRule(f"{name}.branch", GroupKind.DEPTH, depth_lambda)
            for name, _ in blocks_of(model)]


def zoo_row(entry, model, trainer, timing):
    """A --from-zoo row: the stored ResNet measured like a trained one, named by its depth."""
    row = result_row(entry, model, trainer, timing)
    baseline = not entry.startswith("ssl_")
    return {**row, "name": f"{'ResNet' if baseline else 'SSL-ResNet'}-{row['layers']} (zoo)"}


def train_rows(begun, trainer, build, start):
    """The baseline (unless --no-baseline) and the SSL-ResNet row (unless --depth-lambda 0),
    trained and added to the run's record. build(seed=...): the model; start["weights"]:
    the baseline an SSL row starts from under --ssl-from-baseline SOURCE (None: this run's)."""
    args, record, timing = begun.args, begun.record, begun.timing
    # the --quick subset keeps its few epochs: no scaling to the full set's number of steps
    epochs = begun.epochs(50000, EPOCHS, QUICK_EPOCHS, full_size=50000)

    def baseline_row():
        model = cli.model_from(build, args.seed)
        trainer.fit(model, "baseline", epochs["epochs"])
        start["weights"] = model.state_dict()
        return result_row(f"ResNet-{args.depth}", model, trainer, timing)

    def ssl_row():
        model = cli.model_from(build, args.seed,
                               cli.ssl_start_weights(args.ssl_from_baseline, start))
        rules = depth_rules(model, args.depth_lambda)
        lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules, min_prox_lr=args.prox_lr_floor))
        outcome = trainer.ssl(model, lasso, "SSL-ResNet", begun.ssl_schedule(
            epochs["ssl_epochs"], epochs["finetune_epochs"]),
            functools.partial(describe_depth, cut=args.cut))
        row = result_row("SSL-ResNet", model, trainer, timing, rules, outcome.cut)
        return {**row, "name": f"SSL-ResNet-{row['layers']}"}

    if not args.no_baseline:
        cli.train_row(record, f"ResNet-{args.depth}", baseline_row)
    if args.depth_lambda > 0:
        cli.train_row(record, "SSL-ResNet", ssl_row)


def main(argv=None):
    begun = cli.begin("cifar_resnet", parse_args, argv)
    args, record, timing = begun.args, begun.record, begun.timing
    build = functools.partial(models.resnet_cifar, args.depth)
    # read and checked before any training
    start = {"weights": cli.baseline_weights(args.ssl_from_baseline, build)}
    split, facts = cli.load_cifar_split(args.data, args.download, args.synthetic, args.seed,
                                        args.quick, (QUICK_TRAIN, QUICK_TEST))
    record.set(dataset=facts, depth=args.depth, paper_points=PAPER_POINTS)
    trainer = begun.trainer(split, augment.random_crop_flip)
    if args.from_zoo:
        cli.zoo_rows(record, "cifar_resnet", zoo_entries(args.depth),
                     lambda entry, model, info: zoo_row(entry, model, trainer, timing))
    else:
        train_rows(begun, trainer, build, start)
    cli.finish(record, facts, lambda rows: print_table(rows, args.depth),
               lambda rows: plots.depth_figure(rows, PAPER_POINTS, args.out / "depth.png"),
               depth=args.depth, paper_points=PAPER_POINTS)


if __name__ == "__main__":
    cli.run(main)
