"""The flags every experiment shares, with their checks: training (data, epochs, optimizer,
run folder, backend, resume, timing) and the SSL schedule. A check that fails ends the
program through argparse, with one line naming the flag.
"""

import argparse
from pathlib import Path

import numpy as np

from minissl.train import TimingConfig


def parser_for(module_doc, prog, epilog=True):
    """An ArgumentParser whose description is the experiment's first paragraph and whose
    epilog (kept as written) is its last."""
    paragraphs = module_doc.split("\n\n")
    return argparse.ArgumentParser(prog=prog, description=paragraphs[0],
                                   epilog=paragraphs[-1] if epilog else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_training_arguments(parser, epochs, lr, weight_decay, batch_size, out, dataset="mnist"):
    """Add the flags every training experiment has, with its own defaults.

    dataset "mnist" adds --data and --offline as MNIST resolves; "cifar10" adds --data,
    --download (CIFAR-10 has no bundled sample, so downloading is asked for explicitly) and
    --synthetic.
    """
    if dataset == "mnist":
        parser.add_argument("--data", type=Path, metavar="DIR",
                            help="directory holding the four MNIST IDX files (raw or .gz); "
                                 "default: $MINISSL_DATA/mnist, then ~/.cache/minissl/mnist, then "
                                 "a download, then the bundled 10,000-digit sample")
        parser.add_argument("--offline", action="store_true",
                            help="never download: use MNIST found locally, else the bundled sample")
    else:
        parser.add_argument("--data", type=Path, metavar="DIR",
                            help="directory holding CIFAR-10's six binary .bin files (or their "
                                 "cifar-10-batches-bin/); default: $MINISSL_DATA/cifar10, then "
                                 "~/.cache/minissl/cifar10")
        parser.add_argument("--download", action="store_true",
                            help="download the official binary archive (about 160 MB) into the "
                                 "cache when CIFAR-10 is not found")
        parser.add_argument("--synthetic", type=int, metavar="N", default=None,
                            help="train on N random CIFAR-shaped images instead of CIFAR-10 (a "
                                 "smoke test of the whole pipeline; the errors mean nothing)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default {epochs}, scaled up on a smaller training set "
                             f"so that the number of SGD steps stays the same)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"mini-batch size (default {batch_size})")
    parser.add_argument("--lr", type=float, default=lr,
                        help=f"initial learning rate, cosine-decayed per step (default {lr})")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=weight_decay,
                        help=f"L2 weight decay (default {weight_decay})")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default 0)")
    parser.add_argument("--out", type=Path, default=Path(out),
                        help=f"output directory for results.json and plots (default {out})")
    parser.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None,
                        help="array backend: numba (default), numpy (reference kernels) or cupy "
                             "(GPU; needs pip install -e '.[gpu]')")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: fewer epochs (the experiment's docstring says how "
                             "long)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the interrupted run whose --out was DIR, with its own "
                             "arguments, from its per-epoch checkpoints (ends with the same "
                             "weights as a run never interrupted)")
    parser.add_argument("--force", action="store_true",
                        help="take over --out even when another run's lock is there (use when "
                             "that run is gone)")
    defaults = TimingConfig()
    parser.add_argument("--timing-seconds", type=float, default=defaults.min_seconds,
                        metavar="S",
                        help=f"each speed measurement of the compacted model repeats for at "
                             f"least S seconds and {defaults.repeats} times (default "
                             f"{defaults.min_seconds}; 0: {defaults.smoke_repeats} repeats, for a "
                             f"smoke test whose speedups mean nothing)")


def add_ssl_schedule_arguments(group, ssl_epochs, finetune_epochs, finetune_lr,
                               prox_lr_floor=0.0):
    """Add the flags of the SSL schedule (minissl.train.SSLSchedule) to an argparse group:
    --ssl-epochs, --finetune-epochs, --finetune-lr, --cut, --prox-lr-floor, --no-baseline and
    --ssl-phases-from, with the experiment's defaults."""
    group.add_argument("--ssl-epochs", type=int, default=None,
                       help=f"epochs with the prox step (default {ssl_epochs})")
    group.add_argument("--finetune-epochs", type=int, default=None,
                       help=f"masked fine-tuning epochs (default {finetune_epochs}; 0 skips)")
    group.add_argument("--finetune-lr", type=float, default=finetune_lr,
                       help=f"fine-tuning learning rate (default {finetune_lr})")
    group.add_argument("--cut", type=float, default=1e-3,
                       help="after the SSL epochs, zero the groups with norm below this "
                            "(default 1e-3)")
    add_prox_floor_argument(group, prox_lr_floor)
    group.add_argument("--no-baseline", action="store_true", help="skip the dense baseline row")
    group.add_argument("--ssl-phases-from", type=Path, default=None, metavar="DIR",
                       help="do not train the prox epochs of each SSL row: take that row's "
                            "finished prox phase from the earlier run whose --out was DIR, "
                            "then cut (--cut) and fine-tune (--finetune-*) as this run says; "
                            "a cheap way to try other cuts and fine-tuning on one SSL phase "
                            "(give the same rows and lambdas as that run)")


def add_start_from_baseline_argument(group):
    """--ssl-from-baseline [SOURCE]: SSL rows start from a trained baseline (read by
    cli.baseline_weights)."""
    group.add_argument("--ssl-from-baseline", nargs="?", const="", default=None,
                       metavar="SOURCE",
                       help="start each SSL row from a trained baseline's weights instead of "
                            "from scratch: the baseline of this run; or SOURCE: the finished "
                            "baseline of an earlier run whose --out was SOURCE, a model file "
                            "written by minissl.save (.npz), or zoo:NAME (minissl.zoo, e.g. "
                            "zoo:cifar_convnet/baseline)")


def add_from_zoo_argument(parser, experiment):
    """--from-zoo: evaluate the experiment's rows stored in minissl.zoo instead of training."""
    parser.add_argument("--from-zoo", action="store_true",
                        help=f"train nothing: load the rows of {experiment} stored in minissl.zoo "
                             "(the weights our own runs trained), measure their test error on "
                             "the full test set, compact them, check the predictions, time "
                             "them and print the same table and figure as a full run (minutes)")


def check_from_zoo(parser, values):
    """--from-zoo measures the zoo's rows on the full test set: no subset, no random images."""
    if values.get("from_zoo"):
        for flag in ("quick", "synthetic"):
            if values.get(flag):
                parser.error(f"--from-zoo measures the stored rows on the full test set; "
                             f"drop --{flag}")


def add_prox_floor_argument(group, default=0.0):
    """--prox-lr-floor, the same in every experiment (ssl.SSLConfig's min_prox_lr)."""
    group.add_argument("--prox-lr-floor", type=float, default=default, metavar="LR",
                       help="the prox threshold uses max(lr, LR) * lambda, so that groups keep "
                            "shrinking while a decaying learning rate nears zero (default "
                            f"{default:g}{': none' if default == 0 else ''})")


def check_flags(parser, values, positive=(), non_negative=()):
    """Exit through argparse unless each flag named in `positive` is > 0 and each in
    `non_negative` is >= 0; `values` maps flag names (as in the parsed arguments) to values,
    and a value None (not given) passes."""
    for names, bound, text in ((positive, 0, ">"), (non_negative, None, ">=")):
        for name in names:
            value = values[name]
            if value is None:
                continue
            if not np.isfinite(value) or (value <= 0 if bound == 0 else value < 0):
                parser.error(f"--{name.replace('_', '-')} must be {text} 0, got {value}")


def check_ssl_flags(parser, values, lambdas):
    """Exit through argparse unless the shared training and SSL flags in `values` (a dict of
    the parsed arguments) and every one of `lambdas` are valid."""
    check_flags(parser, values, positive=["epochs", "ssl_epochs", "batch_size", "lr",
                                          "finetune_lr"],
                non_negative=["finetune_epochs", "cut", "prox_lr_floor", "momentum",
                              "weight_decay", "timing_seconds"])
    if any(not np.isfinite(value) or value < 0 for value in lambdas):
        parser.error(f"the lambdas must be >= 0 and finite, got {list(lambdas)}")
    if values.get("ssl_from_baseline") == "" and values.get("no_baseline"):
        parser.error("--ssl-from-baseline without SOURCE starts from this run's baseline, which "
                     "--no-baseline skips; give a SOURCE (a run folder, a .npz, zoo:NAME)")
    source = values.get("ssl_phases_from")
    if source is not None and not (source / "checkpoints").is_dir():
        parser.error(f"--ssl-phases-from {source}: no checkpoints folder there (give the --out "
                     f"of a run whose SSL phases finished)")
