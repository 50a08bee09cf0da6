"""What every experiment's command line shares: the common flags, their checks, turning them
into the engine's configs (minissl.train.config), data loading with a one-line report, the
run's start (folder, lock, backend), rows that may diverge, resume and Ctrl-C.

Nothing here trains: the engine (minissl.train) does. Errors a user can fix end the program
with one line (SystemExit), never a traceback.
"""

import argparse
import json
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minissl import augment, cifar, data, serialize, set_backend, zoo
from minissl.nn import StateDictError
from minissl.train import DataSchedule, SGDConfig, SSLSchedule, TimingConfig, Trainer, records
from minissl.train.checkpoint import CheckpointError, finished_weights
from minissl.train.records import Diverged, RunFolderError


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler, `timeout`, `kill`): the run stops as after Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def run(main):
    """Run an experiment's main(); Ctrl-C (SIGINT) or SIGTERM ends it with one line and exit
    status 130 or 143, not a traceback. What the run finished (rows, epochs, and each
    phase's last checkpoint) is kept: results.json is written once more, with "complete":
    false, "interrupted": true and the signal, and the line says how to resume. The output
    folder's lock is released however the run ends.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except BaseException as error:
        stop = _stopped_by(error)
        if stop is None:
            raise
        name, status = stop
        record = records.current_record()
        kept = "nothing was written"
        if record is not None:
            record.save(complete=False, interrupted=True, stopped_by=name)
            kept = (f"{len(record.rows)} finished rows and {len(record.history)} epochs are in "
                    f"{record.path} (complete: false); continue with: python -m "
                    f"minissl.experiments {record.fields['experiment']} --resume {record.out}")
        print(f"\ninterrupted ({name}): stopped before the end; {kept}", file=sys.stderr)
        sys.exit(status)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        record = records.current_record()
        if record is not None:
            record.close()


def _stopped_by(error):
    """("Ctrl-C", 130) for a KeyboardInterrupt, ("SIGTERM", 143) for Terminated, also when
    it caused the error (an interrupt landing inside a compiled Numba call comes back as a
    SystemError whose cause is the interrupt); None for any other error."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return "Ctrl-C", 130
        if isinstance(error, Terminated):
            return "SIGTERM", 143
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def baseline_weights(source, build=None):
    """The trained baseline an SSL row starts from (--ssl-from-baseline SOURCE), read and
    checked before any training: SOURCE is the --out folder of an earlier run (its finished
    baseline), a model file written by minissl.save (.npz), or zoo:NAME (an entry of
    minissl.zoo). With `build` (the model's constructor) the weights are checked to fit it.
    None when `source` is None or "" (this run's baseline, or none). One-line exit when the
    weights cannot be read or do not fit."""
    if not source:
        return None
    try:
        if source.startswith("zoo:"):
            weights = zoo.load(source[len("zoo:"):])[0].state_dict()
        elif source.endswith(".npz"):
            weights = serialize.load(source).state_dict()
        else:
            weights = finished_weights(Path(source), "baseline")
        if build is not None:
            build(seed=0).load_state_dict(weights)  # a misfit ends the run now, not after hours
    except (CheckpointError, zoo.ZooError, serialize.ModelFileError, OSError) as error:
        raise SystemExit(f"error: --ssl-from-baseline {source}: {error}") from None
    except StateDictError as error:
        raise SystemExit(f"error: --ssl-from-baseline {source}: its weights do not fit this "
                         f"experiment's model ({error.args[0] if error.args else error})") from None
    return weights


def ssl_start_weights(from_baseline, start):
    """The state dict an SSL row starts from: under --ssl-from-baseline (`from_baseline` not
    None) the baseline's (`start["weights"]`, from baseline_weights or this run's baseline),
    else None (from scratch). Raises Diverged when the baseline it should start from
    diverged."""
    if from_baseline is None:
        return None
    if start.get("weights") is None:
        raise Diverged("the baseline it starts from (--ssl-from-baseline) diverged")
    return start["weights"]


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
    line when DIR holds no run of this experiment to resume."""
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


def start_run(out, experiment, argv, resume=False, force=False, backend=None):
    """What every experiment does first, before any data is read: select the backend, check
    that `out` can be written and lock it for this run (one-line exit otherwise, so no
    training is lost to a bad path or to a second run writing into the same folder).
    Returns the run's RunRecord: results.json, kept current after every epoch and row."""
    use_backend(backend)
    try:
        return records.open_run(out, experiment, argv, resume=resume, force=force)
    except RunFolderError as error:
        sys.exit(f"error: {error}")


def train_row(record, name, train):
    """Run `train()`, which trains one row of the table and returns it as a dict, and add
    the row to `record`. A row whose loss diverged is kept as {"name", "diverged": why},
    with nothing else claimed for it, and the run goes on with the next row. A checkpoint
    that does not fit ends the run with one line."""
    try:
        row = train()
    except Diverged as error:
        print(f"{name}: {error}; this row is marked diverged (no compaction, no table line)")
        row = {"name": name, "diverged": str(error)}
    except CheckpointError as error:
        sys.exit(f"error: {error}")
    record.add_row(row)
    return row


def zoo_rows(record, experiment, entries, make_row):
    """--from-zoo: add to `record` one row per entry of `entries` (zoo names within
    `experiment`, in table order) that the zoo holds, made by make_row(entry, model, info)
    from the stored model (on the current backend) and its record; names in one line the
    entries it does not hold yet. A row whose measured error differs from the recorded one
    is said so (the tests require them equal on the full test set)."""
    held = [entry for entry in entries if f"{experiment}/{entry}" in zoo.available()]
    missing = [entry for entry in entries if entry not in held]
    if missing:
        print(f"note: the zoo holds no {', '.join(missing)} row of {experiment} yet "
              f"(a full run trains {'it' if len(missing) == 1 else 'them'})")
    for entry in held:
        model, info = zoo.load(f"{experiment}/{entry}")
        row = make_row(entry, model.to_backend(), info)
        same = "the same as" if row["error"] == info["error"] else "NOT the same as"
        print(f"zoo {experiment}/{entry}: test error {row['error']:.2%}, {same} the zoo's "
              f"record ({info['error']:.2%}); trained by: {info['command']} (commit "
              f"{info['commit'][:7]})")
        row["zoo"] = {"entry": f"{experiment}/{entry}", "recorded_error": info["error"],
                      "command": info["command"], "commit": info["commit"]}
        record.add_row(row)
    if not held:
        print(f"note: nothing to show: the zoo holds no row of {experiment}")


def trained_rows(rows):
    """The rows that trained to the end (for tables and figures); says which diverged."""
    for row in rows:
        if "diverged" in row:
            print(f"{row['name']}: diverged ({row['diverged']})")
    return [row for row in rows if "diverged" not in row]


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


def mnist_split(dataset, image_shape=(784,)):
    """(x_train, y_train, x_test, y_test) of MnistData: float32 images in [0, 1] shaped
    (N, *image_shape), int64 labels; and the dataset's facts for results.json."""
    def images(raw):
        return data.to_float_images(raw).reshape((-1,) + tuple(image_shape))  # (N, *image_shape)
    split = (images(dataset.train_images), dataset.train_labels.astype(np.int64),
             images(dataset.test_images), dataset.test_labels.astype(np.int64))
    facts = {"name": dataset.name, "source": dataset.source, "n_train": len(split[1]),
             "n_test": len(split[3])}
    return split, facts


def load_cifar_split(directory, download, synthetic, seed, quick, quick_sizes,
                     statistics=None):
    """CIFAR-10 (or `synthetic` random images) for an experiment: ((x_train, y_train, x_test,
    y_test), dataset facts), images normalized float32 (N, 3, 32, 32) with the training set's
    channel statistics (or `statistics`, a (mean, std) pair of (3,) arrays: those a trained
    model expects), labels int64; `quick` keeps the first quick_sizes = (train, test)."""
    if synthetic is not None:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (synthetic, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, synthetic).astype(np.uint8)
        cut = synthetic * 4 // 5
        train, test = (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
        facts = {"name": "synthetic (random images)", "source": f"--synthetic {synthetic}"}
        print(f"data: {synthetic:,} random CIFAR-shaped images (--synthetic): errors mean nothing")
    else:
        try:
            dataset = cifar.cifar10(directory, download=download)
        except data.DataError as error:
            sys.exit(f"error: {error}")
        print(f"data: {dataset.name}, {len(dataset.train_labels):,} train / "
              f"{len(dataset.test_labels):,} test, from {dataset.source}")
        train = (dataset.train_images, dataset.train_labels)
        test = (dataset.test_images, dataset.test_labels)
        facts = {"name": dataset.name, "source": dataset.source}
    if quick:
        train = tuple(part[:quick_sizes[0]] for part in train)
        test = tuple(part[:quick_sizes[1]] for part in test)
        print(f"--quick: the first {len(train[1]):,} training and {len(test[1]):,} test images")
    mean, std = augment.channel_statistics(train[0]) if statistics is None else statistics
    split = (augment.normalize(train[0], mean, std), train[1].astype(np.int64),
             augment.normalize(test[0], mean, std), test[1].astype(np.int64))
    facts.update(n_train=len(split[1]), n_test=len(split[3]), mean=mean.tolist(),
                 std=std.tolist())
    return split, facts


def epoch_counts(given, n_train, defaults, quick_defaults, quick=False, full_size=60000):
    """The epoch counts of a run: `given` (flag name -> count or None) with every None filled
    from the (quick) defaults. On a smaller training set the SSL and fine-tuning counts (every
    count but "epochs", the baseline's) are multiplied by round(full_size / n_train), so that
    SSL gets as many prox steps as on the full set (the lambdas are tuned for that many). The
    baseline is scaled too, but never past the full run's baseline epochs: a dense model on a
    small set has converged by then (scaled all the way, 160 epochs on the sample sat at 0%
    training error). Says so when it scales. Returns a new dict."""
    factor = max(1, round(full_size / n_train))
    counts = dict(given)
    for name, default in (quick_defaults if quick else defaults).items():
        if counts.get(name) is None:
            scaled = default * factor
            if name == "epochs":  # the baseline: never past the full run's count
                scaled = min(scaled, max(default, defaults[name]))
            counts[name] = scaled
    if factor > 1:
        print(f"note: {n_train:,} training images instead of {full_size:,}: the default SSL and "
              f"fine-tuning epochs are multiplied by {factor} to keep the full run's number of "
              f"prox steps; the baseline trains {counts['epochs']} epochs (it has converged by "
              f"then)")
    return counts


SCHEDULE_FLAGS = ("lr", "momentum", "weight_decay", "batch_size", "seed", "finetune_lr")


@dataclass
class Start:
    """What every experiment begins with, from its command line: the parsed flags (`args`,
    read by the recipe itself), the run's record, and the engine's configs they give."""
    args: argparse.Namespace
    record: records.RunRecord
    sgd: SGDConfig
    timing: TimingConfig

    def epochs(self, n_train, defaults, quick_defaults, full_size=60000):
        """The run's epoch counts (epoch_counts of the flags named in `defaults`), recorded
        in results.json with the schedule's other flags."""
        counts = epoch_counts({name: getattr(self.args, name) for name in defaults}, n_train,
                              defaults, quick_defaults, self.args.quick, full_size)
        self.record.set(**counts, **{name: getattr(self.args, name, None)
                                     for name in SCHEDULE_FLAGS})
        return counts

    def trainer(self, split, augment=None):
        """A Trainer on `split` with the flags' optimizer and batches, recording this run."""
        return Trainer(split, self.sgd, DataSchedule(self.args.batch_size, self.args.seed,
                                                     augment), self.record)

    def ssl_schedule(self, epochs, finetune_epochs):
        """The SSLSchedule of the SSL flags (--finetune-lr, --cut, --ssl-phases-from)."""
        return SSLSchedule(epochs=epochs, finetune_epochs=finetune_epochs,
                           finetune_lr=self.args.finetune_lr, cut=self.args.cut,
                           phases_from=self.args.ssl_phases_from)


def begin(experiment, parse_args, argv=None):
    """Start an experiment: its command line (or, with `--resume DIR` alone, the one that run
    was started with) through `parse_args`, then start_run; returns a Start."""
    argv = resumed_argv(sys.argv[1:] if argv is None else list(argv), experiment)
    args = parse_args(argv)
    record = start_run(args.out, experiment, argv, args.resume is not None, args.force,
                       args.backend)
    return Start(args, record, SGDConfig(args.lr, args.momentum, args.weight_decay),
                 TimingConfig(min_seconds=args.timing_seconds))


def model_from(build, seed, weights=None):
    """`build(seed=seed)` on the current backend, from `weights` (a state dict) when given."""
    model = build(seed=seed)
    if weights is not None:
        model.load_state_dict(weights)
    return model.to_backend()


def phase_seconds(record, phase):
    """Mean seconds per epoch of the named phase in `record`'s history."""
    return float(np.mean([epoch["seconds"] for epoch in record.history
                          if epoch["phase"] == phase]))


def finish(record, dataset, print_table, draw_figure, **extra):
    """The end of every experiment: the rows that trained (saying which diverged) printed by
    `print_table(rows)` and drawn by `draw_figure(rows) -> path`, then write_results."""
    rows = trained_rows(record.rows)
    figure = None
    if rows:
        print_table(rows)
        figure = draw_figure(rows)
    write_results(record, dataset, figure, **extra)


def write_results(record, dataset, figure, **extra):
    """Finish the run: write the complete <out>/results.json (its rows, the per-epoch
    history, the training schedule, the wall time, the seed and the command line, plus
    `dataset` and `extra`), release --out, and say where it and `figure` went. Exits with
    status 1 when every row diverged, so that scripts notice."""
    record.finish(dataset=dataset, **extra)
    wall = time.perf_counter() - record.started
    written = [record.path] + ([figure] if figure is not None else [])
    if (record.out / "report.html").exists():
        written.append(record.out / "report.html")
    names = ", ".join(map(str, written[:-1])) + (" and " if len(written) > 1 else "")
    print(f"wrote {names}{written[-1]} ({wall:.0f} s in all)")
    if record.rows and all("diverged" in row for row in record.rows):
        sys.exit("error: every row diverged; lower --lr")
