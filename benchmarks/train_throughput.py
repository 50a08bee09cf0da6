"""Seconds per training epoch and peak memory: minissl against PyTorch on the CPU.

    python -m benchmarks.train_throughput                  # MLP and LeNet, full MNIST
    python -m benchmarks.train_throughput --json out.json
    python -m benchmarks.train_throughput --steps 200      # time 200 steps, scale to an epoch
    python -m benchmarks.train_throughput --help

Same model, batch, float32 data, SGD with momentum 0.9 and weight decay, and 2 threads on
both sides: the MLP 784-500-300-10 at batch 100 and Caffe's LeNet at batch 64, on the
full MNIST training set (found like the demos find it: $MINISSL_DATA, the cache, ...).
Each measurement runs in its own child process, so the peak resident memory of each
framework is its own and neither thread pool disturbs the other; the two are run one
after the other in the same invocation, which is what makes their ratio meaningful.
PyTorch is optional (`pip install torch==2.13.0`): without it only our column is filled.
"""

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

MODELS = {"mlp": 100, "lenet": 64}  # model -> batch size
FULL_TRAIN_SIZE = 60000
HEADER = (f"{'model':<8}{'batch':>6}{'ours s/epoch':>14}{'torch s/epoch':>15}{'ours/torch':>12}"
          f"{'ours peak MB':>14}{'torch peak MB':>15}")
WARMUP_STEPS = 10


def load_data(model):
    """Full MNIST as float32 in [0, 1]: (N, 784) for the MLP, (N, 1, 28, 28) for LeNet."""
    from minissl import data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MnistFallbackWarning)  # the parent says so
        dataset = data.mnist(download=False)
    images = data.to_float_images(dataset.train_images)
    if model == "lenet":
        images = images.reshape(-1, 1, 28, 28)  # (N, 784) -> (N, 1, 28, 28)
    return images, dataset.train_labels.astype(np.int64), dataset.name


def ours_step_function(model_name):
    from minissl import Tensor, models, ops, optim

    model = models.mlp() if model_name == "mlp" else models.lenet()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(inputs, labels):
        loss = ops.cross_entropy(model(Tensor(inputs)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def torch_step_function(model_name, threads):
    import torch

    torch.set_num_threads(threads)
    nn = torch.nn
    if model_name == "mlp":
        model = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 300), nn.ReLU(),
                              nn.Linear(300, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                              nn.Linear(500, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(inputs, labels):
        loss = nn.functional.cross_entropy(model(torch.from_numpy(inputs)),
                                           torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def worker(framework, model_name, steps, threads):
    """Child process: time one epoch (or `steps` steps, scaled) and report JSON on stdout."""
    images, labels, _ = load_data(model_name)
    batch = MODELS[model_name]
    step = (ours_step_function(model_name) if framework == "ours"
            else torch_step_function(model_name, threads))
    order = np.random.default_rng(0).permutation(len(labels))
    batches = [order[start:start + batch] for start in range(0, len(labels), batch)]
    for indices in batches[:WARMUP_STEPS]:  # compile kernels, allocate buffers
        step(images[indices], labels[indices])
    timed = batches if steps is None else batches[:steps]
    start = time.perf_counter()
    for indices in timed:
        step(images[indices], labels[indices])
    seconds = (time.perf_counter() - start) / len(timed)
    full_epoch_steps = -(-FULL_TRAIN_SIZE // batch)  # an epoch of the full MNIST
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s_per_epoch": seconds * full_epoch_steps, "peak_mb": peak_mb,
                      "steps_timed": len(timed), "n_train": len(labels)}))


def run_worker(framework, model_name, steps, threads):
    command = [sys.executable, "-m", "benchmarks.train_throughput", "--worker", framework,
               "--model", model_name, "--threads", str(threads)]
    if steps is not None:
        command += ["--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} {model_name} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_available():
    return importlib.util.find_spec("torch") is not None


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "lenet"],
                        help="which models to time (default: mlp lenet)")
    parser.add_argument("--steps", type=int, default=None,
                        help="time this many steps and scale to an epoch (default: a whole epoch)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.worker, args.model, args.steps, args.threads)
        return
    with_torch = torch_available()
    if not with_torch:
        print("note: PyTorch is not installed (pip install torch==2.13.0): only minissl is timed")
    rows = []
    for model_name in args.models:
        ours = run_worker("ours", model_name, args.steps, args.threads)
        if ours["n_train"] != FULL_TRAIN_SIZE and not rows:
            print(f"note: the full MNIST was not found (set MINISSL_DATA); timing the "
                  f"{ours['n_train']:,}-image sample and scaling to a 60,000-image epoch")
        if not rows:
            print(HEADER)
        theirs = run_worker("torch", model_name, args.steps, args.threads) if with_torch else None
        row = {"model": model_name, "batch": MODELS[model_name],
               "ours_s_per_epoch": ours["s_per_epoch"], "ours_peak_mb": ours["peak_mb"],
               "torch_s_per_epoch": theirs["s_per_epoch"] if theirs else None,
               "torch_peak_mb": theirs["peak_mb"] if theirs else None,
               "ratio": ours["s_per_epoch"] / theirs["s_per_epoch"] if theirs else None}
        rows.append(row)
        torch_part = (f"{row['torch_s_per_epoch']:>15.2f}{row['ratio']:>12.2f}" if theirs
                      else f"{'-':>15}{'-':>12}")
        torch_memory = f"{row['torch_peak_mb']:>15.0f}" if theirs else f"{'-':>15}"
        print(f"{model_name:<8}{row['batch']:>6}{row['ours_s_per_epoch']:>14.2f}{torch_part}"
              f"{row['ours_peak_mb']:>14.0f}{torch_memory}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "steps_timed": args.steps}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
