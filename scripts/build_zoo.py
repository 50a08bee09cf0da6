"""Store the rows of a finished experiment run in the model zoo (minissl/zoo/).

    python scripts/build_zoo.py runs/zoo_mlp --command "python -m demos.mnist_mlp --out runs/zoo_mlp"

For each trained row of the run's results.json (the MNIST MLP's baseline and SSL rows), the
weights its last phase finished with are read from the run's checkpoints, the row's test
error is measured again on the run's dataset and must equal the recorded one to the image,
an SSL row is compacted (checked to predict the same class on every test image), and the
model is written with minissl.save beside a JSON record (command, commit, seed, dataset,
error, what each layer keeps, SHA-256 of the file).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minissl import compact, data, models, serialize, train, zoo  # noqa: E402
from minissl.experiments import cli  # noqa: E402
from minissl.train import checkpoint  # noqa: E402
from minissl.train.report import kept_per_layer  # noqa: E402


def mlp_entries(run, results):
    """(results row, zoo entry name, trained model) for each trained row of an MLP run."""
    for row in results["rows"]:
        if "diverged" in row:
            continue
        if row["name"] == "baseline":
            phase, entry = "baseline", "baseline"
        else:
            index = row["name"].split()[-1]
            phase = f"{row['name']} fine-tune" if results["finetune_epochs"] else \
                f"{row['name']} ({row.get('mode', 'proximal')})"
            entry = f"ssl{index}"
        model = models.mlp(seed=results["seed"])
        model.load_state_dict(checkpoint.finished_weights(run, phase))
        yield row, entry, model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python scripts/build_zoo.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of a finished mnist_mlp run")
    parser.add_argument("--command", required=True, help="the command that made the run")
    args = parser.parse_args(argv)
    results = json.loads((args.run / "results.json").read_text())
    if not results.get("complete") or results.get("experiment") != "mnist_mlp":
        sys.exit(f"error: {args.run} holds no finished mnist_mlp run")
    split, facts = cli.mnist_split(data.mnist(download=False))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    folder = zoo.FOLDER / "mnist_mlp"
    folder.mkdir(exist_ok=True)
    for row, entry, model in mlp_entries(args.run, results):
        error = train.error_rate(model, split[2], split[3])
        if error != row["error"]:
            sys.exit(f"error: {row['name']}: measured {error} but the run recorded {row['error']}")
        stored, plan = model, compact.plan_compaction(model)
        if entry != "baseline":
            stored, plan = compact.compact(model)
            if (train.predict(stored, split[2]) != train.predict(model, split[2])).any():
                sys.exit(f"error: {row['name']}: the compacted model disagrees with the sparse one")
        path = serialize.save(stored, folder / f"{entry}.npz")
        record = {"experiment": "mnist_mlp", "row": row["name"], "error": error,
                  "test_images": len(split[3]), "seed": results["seed"],
                  "dataset": {key: facts[key] for key in ("name", "n_train", "n_test")},
                  "command": args.command, "commit": commit, "compacted": entry != "baseline",
                  "neurons": row["neurons"], "kept": kept_per_layer(plan),
                  "params": plan.params_after, "flops": plan.flops_after,
                  "sha256": zoo.sha256(path)}
        (folder / f"{entry}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"mnist_mlp/{entry}: {row['name']}, test error {error:.2%}, "
              f"{plan.params_after:,} parameters, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
