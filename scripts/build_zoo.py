"""Store the rows of a finished experiment run in the model zoo (minissl/zoo/).

    python scripts/build_zoo.py runs/zoo_mlp --command "python -m demos.mnist_mlp --out runs/zoo_mlp"
    python scripts/build_zoo.py runs/convnet80_base --command "..." --entry baseline=baseline
    python scripts/build_zoo.py runs/convnet80_ssl23 --command "..." --entry "SSL x1=row2"

For each trained row of the run's results.json (an mnist_mlp, mnist_lenet, cifar_convnet or
cifar_resnet run), the weights its last phase finished with are read from the run's
checkpoints and the row's test error is measured again on the run's dataset: it must equal
the recorded one to the image.
An MLP's SSL row is stored compacted (checked to predict the same class on every test image);
a LeNet, ConvNet or ResNet row is stored as trained, sparse, so that compaction and timing can be
redone from it. Each model is written with minissl.save beside a JSON record (command, commit, seed,
dataset with its normalization, error, what each layer keeps, SHA-256 of the file).
--entry ROW=NAME picks the rows to store and names them; without it every row is stored,
"baseline" as baseline and "SSL N" / "SSL xS" as sslN / sslxS; a ResNet-D run's rows as
resnetD and ssl_resnetD.
"""

import argparse
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minissl import compact, data, models, serialize, train, zoo  # noqa: E402
from minissl.experiments import cli  # noqa: E402
from minissl.train import checkpoint  # noqa: E402
from minissl.train.report import kept_per_layer  # noqa: E402

MLP_FIELDS = ("neurons",)
LENET_FIELDS = ("filters", "channels", "columns", "nonzero")
CONVNET_FIELDS = ("row_sparsity", "column_sparsity", "filters", "columns")
RESNET_FIELDS = ("layers", "layers_per_stage")


def mlp_split(results):
    return cli.mnist_split(data.mnist(download=False))


def lenet_split(results):
    return cli.mnist_split(data.mnist(download=False), (1, 28, 28))


def convnet_split(results):
    return cli.load_cifar_split(None, False, None, results["seed"], False, None)


def resnet_of(results):
    return functools.partial(models.resnet_cifar, results["depth"])


# experiment: (its test split, its model from results.json, whether SSL rows are stored
# compacted, row fields kept)
EXPERIMENTS = {
    "mnist_mlp": (mlp_split, lambda results: models.mlp, True, MLP_FIELDS),
    "mnist_lenet": (lenet_split, lambda results: models.lenet, False, LENET_FIELDS),
    "cifar_convnet": (convnet_split, lambda results: models.cifar_convnet, False, CONVNET_FIELDS),
    "cifar_resnet": (convnet_split, resnet_of, False, RESNET_FIELDS),
}


def is_baseline(row):
    """The baseline row: "baseline", or "ResNet-D" in a cifar_resnet run."""
    return row["name"] == "baseline" or row["name"].startswith("ResNet-")


def default_entry(row, results):
    """The zoo name of a row without --entry: baseline, sslN, sslxS; resnetD, ssl_resnetD."""
    if results.get("experiment") == "cifar_resnet":
        return f"{'resnet' if is_baseline(row) else 'ssl_resnet'}{results['depth']}"
    if row["name"] == "baseline":
        return "baseline"
    return "ssl" + re.sub(r"[^0-9a-z.]+", "_", row["name"].lower().removeprefix("ssl").strip())


def last_phase(row, results):
    """The checkpoint phase a row's weights finished in (an SSL-ResNet-N row trained as the
    phases of "SSL-ResNet")."""
    if is_baseline(row):
        return "baseline"
    name = "SSL-ResNet" if row["name"].startswith("SSL-ResNet") else row["name"]
    if results.get("finetune_epochs"):
        return f"{name} fine-tune"
    return f"{name} ({row.get('mode', 'proximal')})"


def trained_entries(run, results, build, names):
    """(results row, zoo entry name, trained model) for each trained row to store."""
    for row in results["rows"]:
        if "diverged" in row or (names and row["name"] not in names):
            continue
        model = build(seed=results["seed"])
        model.load_state_dict(checkpoint.finished_weights(run, last_phase(row, results)))
        yield row, (names or {}).get(row["name"], default_entry(row, results)), model


def parse_entries(parser, pairs):
    names = {}
    for pair in pairs:
        row, _, name = pair.partition("=")
        if not row or not re.fullmatch(r"[a-z0-9_.]+", name):
            parser.error(f"--entry {pair!r}: write ROW=NAME, NAME of a-z, 0-9, '_' and '.'")
        names[row] = name
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python scripts/build_zoo.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of a finished mnist_mlp, "
                                               "mnist_lenet, cifar_convnet or cifar_resnet run")
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--entry", action="append", default=[], metavar="ROW=NAME",
                        help="store the row named ROW (as results.json names it) as NAME; "
                             "repeat for several (default: every row, named by default_entry)")
    parser.add_argument("--accept-measured", action="store_true",
                        help="when a row's error measured here differs from the run's (the run "
                             "timed its layers on other convolution algorithms), store the "
                             "measured one, with the run's beside it as error_in_the_run")
    args = parser.parse_args(argv)
    names = parse_entries(parser, args.entry)
    results = json.loads((args.run / "results.json").read_text())
    experiment = results.get("experiment")
    if not results.get("complete") or experiment not in EXPERIMENTS:
        sys.exit(f"error: {args.run} holds no finished run of {' or '.join(EXPERIMENTS)}")
    load_split, build_of, store_compacted, fields = EXPERIMENTS[experiment]
    build = build_of(results)
    missing = set(names) - {row["name"] for row in results["rows"]}
    if missing:
        sys.exit(f"error: {args.run} has no row {', '.join(sorted(missing))}")
    split, facts = load_split(results)
    # the commit the run trained with (its record says), else the checkout's
    commit = results.get("run", {}).get("commit") or subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    folder = zoo.FOLDER / experiment
    folder.mkdir(exist_ok=True)
    dataset = {key: facts[key] for key in ("name", "n_train", "n_test", "mean", "std")
               if key in facts}
    for row, entry, model in trained_entries(args.run, results, build, names):
        error = train.error_rate(model, split[2], split[3])
        if error != row["error"] and not args.accept_measured:
            sys.exit(f"error: {row['name']}: measured {error} but the run recorded {row['error']} "
                     f"(--accept-measured stores the measured one and says both)")
        compacted = store_compacted and not is_baseline(row)
        stored, plan = model, compact.plan_compaction(model, split[2].shape[1:])
        if compacted:
            stored, plan = compact.compact(model, split[2].shape[1:])
            if (train.predict(stored, split[2]) != train.predict(model, split[2])).any():
                sys.exit(f"error: {row['name']}: the compacted model disagrees with the sparse one")
        path = serialize.save(stored, folder / f"{entry}.npz")
        record = {"experiment": experiment, "row": row["name"], "error": error,
                  "test_images": len(split[3]), "seed": results["seed"], "dataset": dataset,
                  "command": args.command, "commit": commit, "compacted": compacted,
                  **{field: row[field] for field in fields if field in row},
                  "kept": kept_per_layer(plan), "params": plan.params_after,
                  "flops": plan.flops_after, "sha256": zoo.sha256(path)}
        if error != row["error"]:  # e.g. the run's convolutions ran on another algorithm
            record["error_in_the_run"] = row["error"]
        (folder / f"{entry}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{experiment}/{entry}: {row['name']}, test error {error:.2%}, "
              f"{plan.params_after:,} parameters after compaction, "
              f"{path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
