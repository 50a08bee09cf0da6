"""What every demo shares: common flags, data loading, the training loop, evaluation
and the run's record (results.json, through demos.harness). Uses only minissl's public API.
"""

import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minissl import (Tensor, augment, compact, data, no_grad, ops, optim, set_backend, timing,
                     to_numpy)
from minissl.backend import array_module
from minissl.nn import StateDictError

from demos import checkpoint, harness
from demos.harness import Diverged

EVAL_BATCH = 1000
TIMING_MIN_SECONDS = 0.2  # each speed measurement repeats for at least this long
TIMING_REPEATS = 20       # ... and at least this often; with TIMING_MIN_SECONDS = 0 (a smoke
SMOKE_REPEATS = 3         # test whose speedups mean nothing) only this often


def run(main):
    """Run a demo's main(); Ctrl-C ends it with one line and exit status 130, not a traceback.

    What the run finished (rows, epochs) is kept: results.json is written once more, with
    "complete": false and "interrupted": true. The output folder's lock is released however
    the run ends.
    """
    try:
        main()
    except BaseException as error:
        if not _caused_by_ctrl_c(error):
            raise
        record = harness.current_record()
        kept = "nothing was written"
        if record is not None:
            record.save(complete=False, interrupted=True)
            kept = (f"{len(record.rows)} finished rows and {len(record.history)} epochs are in "
                    f"{record.path} (complete: false); continue with: python -m "
                    f"demos.{record.fields['experiment']} --resume {record.path.parent}")
        print(f"\ninterrupted (Ctrl-C): stopped before the end; {kept}", file=sys.stderr)
        sys.exit(130)
    finally:
        record = harness.current_record()
        if record is not None:
            record.close()


def _caused_by_ctrl_c(error):
    """True for a KeyboardInterrupt, and for an error raised because of one: Ctrl-C landing
    inside a compiled Numba call comes back as a SystemError whose cause is the interrupt."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def add_training_arguments(parser, epochs, lr, weight_decay, batch_size, out, dataset="mnist"):
    """Add the flags every training demo has, with the demo's own defaults.

    dataset "mnist" adds --data and --offline as MNIST resolves; "cifar10" adds --data and
    --download (CIFAR-10 has no bundled sample, so downloading is asked for explicitly).
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
                        help="a short run: fewer epochs (the demo's docstring says how long)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the interrupted run whose --out was DIR, with its own "
                             "arguments, from its per-epoch checkpoints (ends with the same "
                             "weights as a run never interrupted)")
    parser.add_argument("--force", action="store_true",
                        help="take over --out even when another run's lock is there (use when "
                             "that run is gone)")
    parser.add_argument("--timing-seconds", type=float, default=TIMING_MIN_SECONDS,
                        metavar="S",
                        help=f"each speed measurement of the compacted model repeats for at "
                             f"least S seconds and {TIMING_REPEATS} times (default "
                             f"{TIMING_MIN_SECONDS}; 0: {SMOKE_REPEATS} repeats, for a smoke "
                             f"test whose speedups mean nothing)")


def add_ssl_schedule_arguments(group, ssl_epochs, finetune_epochs, finetune_lr,
                               prox_lr_floor=0.0):
    """Add the flags of the SSL schedule (`ssl_phases`) to an argparse group: --ssl-epochs,
    --finetune-epochs, --finetune-lr, --cut, --prox-lr-floor and --no-baseline, with the
    demo's defaults."""
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
    """--ssl-from-baseline [DIR]: SSL rows start from a trained baseline (checked by
    check_ssl_schedule, read by baseline_start)."""
    group.add_argument("--ssl-from-baseline", nargs="?", const="", default=None, metavar="DIR",
                       help="start each SSL row from the trained baseline's weights instead of "
                            "from scratch: the baseline of this run, or with DIR the finished "
                            "baseline of an earlier run whose --out was DIR")


def baseline_start(args):
    """{"weights": the finished baseline of --ssl-from-baseline DIR} when DIR is given (read
    and checked before any training; one-line exit when it cannot be), else {} (the
    baseline of this run fills it, or the rows start from scratch)."""
    if not getattr(args, "ssl_from_baseline", None):
        return {}
    try:
        return {"weights": checkpoint.finished_weights(Path(args.ssl_from_baseline), "baseline")}
    except checkpoint.CheckpointError as error:
        raise SystemExit(f"error: --ssl-from-baseline: {error}") from None


def ssl_start_weights(args, start):
    """The state dict an SSL row starts from: the baseline's under --ssl-from-baseline
    (`start`, from baseline_start or this run's baseline), else None (from scratch).
    Raises Diverged when the baseline it should start from diverged."""
    if getattr(args, "ssl_from_baseline", None) is None:
        return None
    if start.get("weights") is None:
        raise Diverged("the baseline it starts from (--ssl-from-baseline) diverged")
    return start["weights"]


def add_prox_floor_argument(group, default=0.0):
    """--prox-lr-floor, the same in every demo (read by ssl.SSLConfig's min_prox_lr)."""
    group.add_argument("--prox-lr-floor", type=float, default=default, metavar="LR",
                       help="the prox threshold uses max(lr, LR) * lambda, so that groups keep "
                            "shrinking while a decaying learning rate nears zero (default "
                            f"{default:g}{': none' if default == 0 else ''})")


def check_ssl_schedule(parser, args, lambdas):
    """Exit through argparse unless the schedule's numbers (and `lambdas`) are valid."""
    given = [name for name in ("epochs", "ssl_epochs") if getattr(args, name) is not None]
    check_positive(parser, args, given + ["batch_size", "lr", "finetune_lr"])
    if ((args.finetune_epochs or 0) < 0 or args.cut < 0 or min(lambdas, default=0) < 0
            or getattr(args, "prox_lr_floor", 0.0) < 0):
        parser.error("--finetune-epochs, --cut, --prox-lr-floor and the lambdas must be >= 0")
    if args.momentum < 0 or args.weight_decay < 0:
        parser.error("--momentum and --weight-decay must be >= 0")
    if getattr(args, "ssl_from_baseline", None) == "" and args.no_baseline:
        parser.error("--ssl-from-baseline without DIR starts from this run's baseline, which "
                     "--no-baseline skips; give the DIR of a run that trained one")
    source = getattr(args, "ssl_phases_from", None)
    if source is not None and not (source / "checkpoints").is_dir():
        parser.error(f"--ssl-phases-from {source}: no checkpoints folder there (give the --out "
                     f"of a run whose SSL phases finished)")


def check_positive(parser, args, names):
    """Exit through argparse with a clear message when a numeric flag is not positive."""
    for name in names:
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")


def use_backend(name):
    """Select the backend named by --backend (None keeps the default); exit cleanly on error."""
    if name is None:
        return
    try:
        set_backend(name)
    except ImportError as error:
        sys.exit(f"error: {error}")


def resumed_argv(argv, experiment):
    """The command line to run: `argv` itself, or, when it is `--resume DIR` (alone), the
    arguments the run in DIR was started with plus --out DIR --resume DIR. Exits with one
    line when DIR holds no run of this demo to resume."""
    if "--resume" not in argv:
        return argv
    position = argv.index("--resume")
    if len(argv) != 2 or position != 0:
        sys.exit("error: --resume DIR takes no other flags: it continues that run with the "
                 "arguments it was started with")
    folder = Path(argv[1])
    try:
        earlier = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError) as error:
        sys.exit(f"error: --resume {folder}: no readable results.json of an earlier run there "
                 f"({error})")
    if earlier.get("experiment") != experiment:
        sys.exit(f"error: --resume {folder}: that run is {earlier.get('experiment')!r}, not "
                 f"{experiment!r}")
    if earlier.get("complete"):
        sys.exit(f"error: --resume {folder}: that run is complete; nothing to resume")
    original, stored = [], [str(value) for value in earlier["argv"]]
    while stored:  # drop the earlier --out/--resume: the folder given now is the one
        flag = stored.pop(0)
        if flag in ("--out", "--resume"):
            stored = stored[1:]
        elif not flag.startswith(("--out=", "--resume=")):
            original.append(flag)
    return original + ["--out", str(folder), "--resume", str(folder)]


def start_run(args, experiment):
    """What every demo does first, before any data is read: take --timing-seconds, select
    --backend, check that --out can be written and lock it for this run (one-line exit
    otherwise, so no training is lost to a bad path or to a second run writing into the same
    folder).
    Returns the run's harness.RunRecord: results.json, kept current after every epoch and row.
    """
    global TIMING_MIN_SECONDS
    if args.timing_seconds < 0:
        raise SystemExit(f"error: --timing-seconds must be >= 0, got {args.timing_seconds}")
    TIMING_MIN_SECONDS = args.timing_seconds  # read by compaction_report for this run
    use_backend(args.backend)
    check_writable(args.out)
    record = harness.start_record(args, experiment)
    record.checkpoints = checkpoint.PhaseCheckpoints(args.out, resume=args.resume is not None)
    return record


def train_row(record, name, train):
    """Run `train()`, which trains one row of the table and returns it as a dict, and add
    the row to `record`. A row whose loss diverged is kept as {"name", "diverged": why},
    with nothing else claimed for it, and the run goes on with the next row."""
    try:
        row = train()
    except Diverged as error:
        print(f"{name}: {error}; this row is marked diverged (no compaction, no table line)")
        row = {"name": name, "diverged": str(error)}
    record.add_row(row)
    return row


def trained_rows(rows):
    """The rows that trained to the end (for tables and figures); says which diverged."""
    for row in rows:
        if "diverged" in row:
            print(f"{row['name']}: diverged ({row['diverged']})")
    return [row for row in rows if "diverged" not in row]


def check_writable(out):
    """Exit with one line unless `out` is (or can be made) a folder we can write files in."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        sys.exit(f"error: --out {out} is not a folder minissl can write in ({error.strerror or error})")


def on_backend(array):
    """The array in the current backend's array module (a copy to the GPU under cupy)."""
    return array_module().asarray(array)


def load_mnist(directory, offline=False):
    """Resolve MNIST (see minissl.data.mnist), print where it came from, return MnistData."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.MnistFallbackWarning)
        warnings.simplefilter("always", data.NotCanonicalMnistWarning)
        try:
            dataset = data.mnist(directory, download=not offline)
        except data.DataError as error:
            sys.exit(f"error: {error}")
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"data: {dataset.name}, {len(dataset.train_labels):,} train / "
          f"{len(dataset.test_labels):,} test, from {dataset.source}")
    return dataset


def load_cifar10(directory, download=False):
    """Resolve CIFAR-10 (see minissl.cifar), print where it came from, return CifarData;
    exit with the loader's one-line message when it is missing or corrupt."""
    try:
        dataset = data.cifar10(directory, download=download)
    except data.DataError as error:
        sys.exit(f"error: {error}")
    print(f"data: {dataset.name}, {len(dataset.train_labels):,} train / "
          f"{len(dataset.test_labels):,} test, from {dataset.source}")
    return dataset


def load_cifar_split(args, quick_train, quick_test):
    """CIFAR-10 (or --synthetic random images) for a demo: ((x_train, y_train, x_test, y_test),
    dataset facts), images normalized float32 (N, 3, 32, 32) with the training set's channel
    statistics, labels int64; --quick keeps the first quick_train / quick_test images."""
    if args.synthetic is not None:
        rng = np.random.default_rng(args.seed)
        count = args.synthetic
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        cut = count * 4 // 5
        train, test = (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
        facts = {"name": "synthetic (random images)", "source": f"--synthetic {count}"}
        print(f"data: {count:,} random CIFAR-shaped images (--synthetic): errors mean nothing")
    else:
        dataset = load_cifar10(args.data, args.download)
        train = (dataset.train_images, dataset.train_labels)
        test = (dataset.test_images, dataset.test_labels)
        facts = {"name": dataset.name, "source": dataset.source}
    if args.quick:
        train = tuple(part[:quick_train] for part in train)
        test = tuple(part[:quick_test] for part in test)
        print(f"--quick: the first {len(train[1]):,} training and {len(test[1]):,} test images")
    mean, std = augment.channel_statistics(train[0])
    split = (augment.normalize(train[0], mean, std), train[1].astype(np.int64),
             augment.normalize(test[0], mean, std), test[1].astype(np.int64))
    facts.update(n_train=len(split[1]), n_test=len(split[3]), mean=mean.tolist(),
                 std=std.tolist())
    return split, facts


def train_epoch(model, optimizer, schedule, inputs, labels, batch_size, rng, description,
                regularizer=None, augment=None):
    """One pass over the data with SGD; returns (mean loss, training error).

    `regularizer` (e.g. minissl.ssl.GroupLasso) gets `before_step()` between backward
    and the optimizer step, and `after_step(lr)` after it, with that step's learning
    rate: the proximal group-lasso step hooks in there. `augment(batch, rng)`, when given,
    transforms each batch of inputs first (random crops and flips for CIFAR). Shows a tqdm
    bar with loss, accuracy and images per second.
    """
    model.train()
    total_loss, wrong, seen, start = 0.0, 0, 0, time.perf_counter()
    steps = -(-len(inputs) // batch_size)
    # disable=None: no bar when stderr is not a terminal (a log file gets the epoch lines,
    # not a megabyte of redraws)
    with tqdm(total=steps, desc=description, leave=False, unit="batch", file=sys.stderr,
              disable=None) as bar:
        for step, (batch_inputs, batch_labels) in enumerate(
                data.batches(inputs, labels, batch_size, rng), start=1):
            if augment is not None:
                batch_inputs = augment(batch_inputs, rng)
            logits = model(Tensor(on_backend(batch_inputs)))
            loss = ops.cross_entropy(logits, batch_labels)
            optimizer.zero_grad()
            loss.backward()
            lr = optimizer.lr
            if regularizer is not None:
                regularizer.before_step()
            optimizer.step()
            if regularizer is not None:
                regularizer.after_step(lr)
            if schedule is not None:
                schedule.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise Diverged(f"the training loss became {loss_value} at step {step} of "
                               f"{description}; try a lower --lr (this phase: {lr:g})")
            total_loss += loss_value * len(batch_labels)
            wrong += int((to_numpy(logits.data).argmax(axis=1) != batch_labels).sum())
            seen += len(batch_labels)
            bar.update(1)
            if step % 20 == 0 or seen == len(inputs):
                rate = seen / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{1 - wrong / seen:.4f}",
                                img_s=f"{rate:,.0f}")
    return total_loss / seen, wrong / seen


def train_phase(model, args, split, record, phase, epochs, lr, regularizer=None, describe=None,
                augment=None):
    """Train for `epochs` with SGD and a per-step cosine schedule from `lr` to 0.

    `split` is (x_train, y_train, x_test, y_test); `args` gives momentum, weight_decay,
    batch_size and seed. After each epoch the test error is measured, a line is printed
    and the epoch added to `record` (a harness.RunRecord, which saves results.json);
    `describe(model)`, when given, returns a dict of extra fields for that epoch and a short
    text for the line. `augment` is passed to train_epoch. Raises Diverged when the loss
    stops being finite.

    After every epoch the phase's checkpoint is written (demos.checkpoint); when the run
    resumes, the phase starts from it: skipped when it had finished, else continued after
    its last finished epoch, with every state a step depends on restored.
    """
    x_train, y_train, x_test, y_test = split
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    schedule = optim.CosineSchedule(optimizer, total_steps=epochs * steps_per_epoch)
    rng = np.random.default_rng(args.seed)
    phase_history, first_epoch = [], 1
    saved = record.checkpoints.load(phase, epochs)
    if saved is not None:
        meta, arrays = saved
        checkpoint.restore(meta, arrays, model, optimizer, schedule, rng)
        phase_history = meta["history"]
        for epoch_record in phase_history:
            record.add_epoch(epoch_record)
        first_epoch = meta["epoch"] + 1
        done = "finished" if meta["epoch"] == epochs else "continues"
        print(f"{phase}: resumed from its checkpoint after epoch {meta['epoch']}/{epochs} "
              f"({done})")
    for epoch in range(first_epoch, epochs + 1):
        start = time.perf_counter()
        loss, train_error = train_epoch(model, optimizer, schedule, x_train, y_train,
                                        args.batch_size, rng, f"{phase} {epoch}/{epochs}",
                                        regularizer, augment)
        seconds = time.perf_counter() - start
        test_error = error_rate(model, x_test, y_test)
        epoch_record = {"phase": phase, "epoch": epoch, "loss": loss, "train_error": train_error,
                        "test_error": test_error, "seconds": seconds}
        extra, text = describe(model) if describe is not None else ({}, "")
        epoch_record.update(extra)
        record.add_epoch(epoch_record)
        phase_history.append(epoch_record)
        record.checkpoints.save(phase, epoch, epochs, model, optimizer, schedule, rng,
                                phase_history)
        print(f"{phase} epoch {epoch:2d}/{epochs}: loss {loss:.4f}  train error {train_error:.2%}  "
              f"test error {test_error:.2%}  {seconds:.1f} s{text}")


def ssl_phases(model, lasso, args, split, record, name, describe=None, ssl_phase=None,
               augment=None, cut=None, ssl_epochs=None, finetune_lr=None):
    """The SSL schedule every demo follows, returning (CutReport, error before, error after).

    1. `ssl_epochs` (default args.ssl_epochs) of SGD with the proximal group-lasso step
       (`lasso`) from args.lr, or, with --ssl-phases-from DIR, the weights this phase
       finished with in that run;
    2. the reported cut: groups with 0 < norm < `cut` (default args.cut) set to exactly
       zero, with the test error before and after (DESIGN.md: the vanishing-threshold trap);
    3. args.finetune_epochs at `finetune_lr` (default args.finetune_lr) with the zero groups
       held at zero.
    `ssl_phase` names step 1 in the log (default: `name`); `augment` goes to train_epoch.
    """
    if lasso.config.min_prox_lr > 0:
        print(f"{name}: prox threshold max(lr, {lasso.config.min_prox_lr:g}) * lambda "
              f"(--prox-lr-floor)")
    source = getattr(args, "ssl_phases_from", None)
    if source is None:
        train_phase(model, args, split, record, ssl_phase or name,
                    ssl_epochs or args.ssl_epochs, args.lr, lasso, describe, augment)
    else:
        load_finished_phase(model, source, ssl_phase or name)
    error_before = error_rate(model, split[2], split[3])
    cut = lasso.zero_small_groups(args.cut if cut is None else cut)
    error_after = error_rate(model, split[2], split[3])
    print(f"{name} cut: {cut.groups_zeroed} groups with 0 < norm < {cut.threshold:g} set to "
          f"exactly zero (largest such norm {cut.largest_norm_zeroed:.2e}); test error "
          f"{error_before:.2%} -> {error_after:.2%}")
    if args.finetune_epochs:
        train_phase(model, args, split, record, f"{name} fine-tune", args.finetune_epochs,
                    finetune_lr or args.finetune_lr, lasso.hold_zeros(), describe, augment)
    return cut, error_before, error_after


def load_finished_phase(model, out, phase):
    """Load into `model` the weights `phase` finished with in the run whose --out was `out`
    (--ssl-phases-from); exits with one line when there are none or they do not fit."""
    try:
        model.load_state_dict(checkpoint.finished_weights(out, phase))
    except (checkpoint.CheckpointError, StateDictError) as error:
        raise SystemExit(f"error: --ssl-phases-from: {error}") from None
    print(f"{phase}: prox epochs not trained; weights from the finished phase in {out}")


def fill_epoch_defaults(args, n_train, defaults, quick_defaults, full_size=60000):
    """Set the epoch counts the user did not give: the (quick) defaults, where the SSL and
    fine-tuning epochs (every count but "epochs", the baseline's, including a row's own SSL
    epochs) are multiplied by round(full_size / n_train), so that on a smaller
    training set (the bundled 8,000-image sample) SSL gets as many prox steps as on the full
    set (the lambdas are tuned for that many). The baseline is scaled too, but never past
    the full run's baseline epochs: a dense model on a small set has converged by then
    (scaled all the way, 160 epochs on the sample sat at 0% training error). Says so when
    it scales. Returns the factor.
    """
    factor = max(1, round(full_size / n_train))
    for name, default in (quick_defaults if args.quick else defaults).items():
        if getattr(args, name) is None:
            scaled = default * factor
            if name == "epochs":  # the baseline: never past the full run's count
                scaled = min(scaled, max(default, defaults[name]))
            setattr(args, name, scaled)
    if factor > 1:
        print(f"note: {n_train:,} training images instead of {full_size:,}: the default SSL and "
              f"fine-tuning epochs are multiplied by {factor} to keep the full run's number of "
              f"prox steps; the baseline trains {args.epochs} epochs (it has converged by then)")
    return factor


def predict(model, inputs):
    """Return predicted classes for `inputs`, evaluated in batches without a graph."""
    model.eval()
    predictions = []
    with no_grad():
        for start in range(0, len(inputs), EVAL_BATCH):
            logits = model(Tensor(on_backend(inputs[start:start + EVAL_BATCH])))
            predictions.append(to_numpy(logits.data).argmax(axis=1))
    return np.concatenate(predictions)


def error_rate(model, inputs, labels):
    """Return the fraction of misclassified inputs."""
    return float((predict(model, inputs) != labels).mean())


def compaction_report(model, inputs, labels, input_shape=None, batch=100):
    """Compact a sparse model, prove it computes the same predictions, time the speedup.

    `inputs` (N, ...) are real test images: the compacted model must predict exactly the
    sparse model's classes on all of them (else RuntimeError: a bug, never a result); the
    count that agreed is reported as "same_predictions" [agreed, images].
    Returns (None, None), after saying why, when SSL left a layer with nothing (every unit
    zero). Otherwise returns (small model, dict) with the test error, the plan's FLOPs and
    parameters, what each Linear/Conv2d keeps ("kept": filters, channels read and columns of
    its GEMM matrix), the forward speedup of each Linear/Conv2d layer (timing.layer_speeds,
    batch `batch`) and of the whole network.
    """
    try:
        small, plan = compact.compact(model, input_shape)
    except compact.CompactionError as error:
        print(f"note: nothing to compact ({error}); lower the lambdas")
        return None, None
    sparse_predictions, small_predictions = predict(model, inputs), predict(small, inputs)
    agree = int((sparse_predictions == small_predictions).sum())
    if agree != len(inputs):
        raise RuntimeError(f"the compacted model disagrees with the sparse one on "
                           f"{len(inputs) - agree} of {len(inputs)} images")
    x = Tensor(on_backend(inputs[:batch]))
    repeats = TIMING_REPEATS if TIMING_MIN_SECONDS > 0 else SMOKE_REPEATS
    layers = [speed.summary() for speed in
              timing.layer_speeds(model, plan, x, repeats=repeats, min_seconds=TIMING_MIN_SECONDS)]
    whole = timing.network_speed(model, small, x, repeats=repeats, min_seconds=TIMING_MIN_SECONDS)
    whole_flags = timing.speedup_flags(whole.median, (whole.q1, whole.q3),
                                       100.0 * plan.flops_after / plan.flops_before)
    for name, flags in [(f"layer {entry['layer']}", entry["flags"]) for entry in layers] + [
            ("whole network", whole_flags)]:
        if flags:
            print(f"warning: {name}: {'; '.join(flags)}: machine noise, not a result (marked "
                  f"'?' in the table; rerun on a quiet machine)")
    kept = {layer.name: {"filters": len(layer.kept_out), "channels": len(layer.kept_in),
                         "columns": (layer.shape_after[1] if len(layer.shape_after) == 2 else
                                     int(np.prod(layer.shape_after[1:])))}
            for layer in plan.layers if layer.kind in ("conv", "linear") and layer.shape_after}
    return small, {"error": float((small_predictions != labels).mean()),
                   "same_predictions": [agree, len(inputs)], "kept": kept,
                   "params": [plan.params_before, plan.params_after],
                   "flops": [plan.flops_before, plan.flops_after], "layers": layers,
                   "whole_speedup": whole.median, "whole_speedup_iqr": [whole.q1, whole.q3],
                   "whole_flags": whole_flags, "batch": batch}


def speed_text(value, flags=()):
    """A speedup for a table: "2.31", "2.31?" when timing flagged it (not a result, see
    minissl.timing.speedup_flags), "-" when there is none."""
    if value is None:
        return "-"
    return f"{value:.2f}" + ("?" if flags else "")


def row_speeds(row, separator):
    """A table row's per-layer speedups joined by `separator` ("1.83 / 5.20?"), "-" when the
    row has none; a flagged timing gets its "?" (speed_text)."""
    if not row.get("speedup"):
        return "-"
    flags = row.get("speedup_flags") or [[]] * len(row["speedup"])
    return separator.join(map(speed_text, row["speedup"], flags))


def flagged_note(rows):
    """The table's footnote when some speedup in `rows` is marked '?'."""
    if any(row.get("compacted") and (row["compacted"].get("whole_flags") or any(
            entry["flags"] for entry in row["compacted"]["layers"])) for row in rows):
        print("? = a timing the FLOPs cannot explain (machine noise): not a result; "
              "results.json keeps it with its flags and quartiles")


def phase_seconds(record, phase):
    """Mean seconds per epoch of the named phase in `record`'s history."""
    return float(np.mean([epoch["seconds"] for epoch in record.history
                          if epoch["phase"] == phase]))


def write_results(record, dataset, figure, **extra):
    """Finish the run: write the complete <out>/results.json (its rows, the per-epoch
    history, the training schedule, the wall time, the seed and the command line, plus
    `dataset` and `extra`), release --out, and say where it and `figure` went. Exits with
    status 1 when every row diverged, so that scripts notice."""
    record.finish(dataset=dataset, **extra)
    wall = time.perf_counter() - record.started
    figure_text = f" and {figure}" if figure is not None else ""
    print(f"wrote {record.path}{figure_text} ({wall:.0f} s in all)")
    if record.rows and all("diverged" in row for row in record.rows):
        sys.exit("error: every row diverged; lower --lr")
