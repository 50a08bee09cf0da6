"""Seconds per training epoch and peak memory: minissl against PyTorch on the CPU.

    python -m benchmarks.train_throughput                  # MLP and LeNet, full MNIST
    python -m benchmarks.train_throughput --models convnet resnet20 resnet32 --rounds 2
    python -m benchmarks.train_throughput --json out.json
    python -m benchmarks.train_throughput --steps 200      # time 200 steps, scale to an epoch
    python -m benchmarks.train_throughput --help

Same model, batch, float32 data, SGD with momentum 0.9 and weight decay, and 2 threads on
both sides: the MLP 784-500-300-10 at batch 100 and Caffe's LeNet at batch 64 on the full
MNIST training set (found like the demos find it: $MINISSL_DATA, the cache, ...); the
CIFAR-10 ConvNet, ResNet-20 and ResNet-32 (`minissl.models`, rebuilt layer for layer in
PyTorch) at batch 128 on random images of CIFAR's shape (a step costs the same whatever the
pixels; 20 steps unless --steps says otherwise), scaled to a 50,000-image epoch.
An epoch's time is the median step time times the steps of an epoch (the median, because
these machines are shared and a few steps can be slowed by others). Each measurement runs
in its own child process, so the peak resident memory of each framework is its own and
neither thread pool disturbs the other; the two are run one after the other in the same
invocation, which is what makes their ratio meaningful. With --rounds N they alternate N
times and the fastest round of each is kept.
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

from minissl.atomic import atomic_file

MODELS = {"mlp": 100, "lenet": 64, "convnet": 128, "resnet20": 128, "resnet32": 128}  # batch
CIFAR_MODELS = ("convnet", "resnet20", "resnet32")
FULL_TRAIN_SIZE = {"mlp": 60000, "lenet": 60000, "convnet": 50000, "resnet20": 50000,
                   "resnet32": 50000}
CIFAR_DEFAULT_STEPS = 20
HEADER = (f"{'model':<9}{'batch':>5}{'ours s/epoch':>14}{'torch s/epoch':>15}{'ours/torch':>12}"
          f"{'ours peak MB':>14}{'torch peak MB':>15}")
WARMUP_STEPS = 10


def load_data(model):
    """Full MNIST as float32 in [0, 1]: (N, 784) for the MLP, (N, 1, 28, 28) for LeNet;
    for the CIFAR models, 4,096 random images (N, 3, 32, 32) with random labels."""
    from minissl import data

    if model in CIFAR_MODELS:
        rng = np.random.default_rng(0)
        images = rng.standard_normal((4096, 3, 32, 32)).astype(np.float32)
        return images, rng.integers(0, 10, 4096).astype(np.int64), "random CIFAR-shaped"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MnistFallbackWarning)  # the parent says so
        dataset = data.mnist(download=False)
    images = data.to_float_images(dataset.train_images)
    if model == "lenet":
        images = images.reshape(-1, 1, 28, 28)  # (N, 784) -> (N, 1, 28, 28)
    return images, dataset.train_labels.astype(np.int64), dataset.name


def ours_step_function(model_name):
    """One minissl SGD step (the same as benchmarks.profile_step's) for the named model."""
    from benchmarks.profile_step import build_model, make_step

    return make_step(build_model(model_name))


def torch_model(model_name):
    """The PyTorch twin of `minissl.models`' model of that name (same layers, same order)."""
    import torch

    nn = torch.nn
    if model_name == "mlp":
        return nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 300), nn.ReLU(),
                             nn.Linear(300, 10))
    if model_name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Linear(500, 10))
    if model_name == "convnet":
        return nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Flatten(), nn.Linear(1024, 10))
    return _torch_resnet(int(model_name.removeprefix("resnet")))


def _torch_resnet(depth):
    """The CIFAR ResNet of `depth` (6n + 2) as `minissl.models.resnet_cifar(depth)` builds it."""
    import torch

    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, in_channels, out_channels, stride):
            super().__init__()
            self.branch = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(),
                nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
                nn.BatchNorm2d(out_channels))
            self.shortcut = None
            if stride != 1 or in_channels != out_channels:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                    nn.BatchNorm2d(out_channels))

        def forward(self, x):
            identity = x if self.shortcut is None else self.shortcut(x)
            return torch.relu(self.branch(x) + identity)

    layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    in_channels = 16
    for stage, channels in enumerate((16, 32, 64)):
        for index in range((depth - 2) // 6):
            layers.append(Block(in_channels, channels, 2 if stage > 0 and index == 0 else 1))
            in_channels = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def torch_step_function(model_name, threads):
    import torch

    torch.set_num_threads(threads)
    nn = torch.nn
    model = torch_model(model_name)
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
    if steps is None and model_name in CIFAR_MODELS:
        steps = CIFAR_DEFAULT_STEPS
    timed = batches if steps is None else [batches[i % len(batches)] for i in range(steps)]
    seconds = []
    for indices in timed:
        start = time.perf_counter()
        step(images[indices], labels[indices])
        seconds.append(time.perf_counter() - start)
    full_epoch_steps = -(-FULL_TRAIN_SIZE[model_name] // batch)  # an epoch of the full set
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s_per_epoch": float(np.median(seconds)) * full_epoch_steps,
                      "ms_per_step": 1000 * float(np.median(seconds)), "peak_mb": peak_mb,
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
                        help="time this many steps and scale to an epoch (default: a whole "
                             f"epoch for MNIST models, {CIFAR_DEFAULT_STEPS} steps for CIFAR ones)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate ours and PyTorch this many times, keep each one's "
                             "fastest (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def fastest(runs):
    """The run with the lowest time per epoch (None when there are none)."""
    return min(runs, key=lambda run: run["s_per_epoch"]) if runs else None


def time_model(model_name, args, with_torch):
    """Alternate our worker and PyTorch's `args.rounds` times; return the row."""
    ours_runs, torch_runs = [], []
    for _ in range(args.rounds):
        ours_runs.append(run_worker("ours", model_name, args.steps, args.threads))
        if with_torch:
            torch_runs.append(run_worker("torch", model_name, args.steps, args.threads))
    ours, theirs = fastest(ours_runs), fastest(torch_runs)
    return {"model": model_name, "batch": MODELS[model_name], "n_train": ours["n_train"],
            "steps_timed": ours["steps_timed"], "rounds": args.rounds,
            "ours_s_per_epoch": ours["s_per_epoch"], "ours_ms_per_step": ours["ms_per_step"],
            "ours_peak_mb": ours["peak_mb"],
            "torch_s_per_epoch": theirs["s_per_epoch"] if theirs else None,
            "torch_ms_per_step": theirs["ms_per_step"] if theirs else None,
            "torch_peak_mb": theirs["peak_mb"] if theirs else None,
            "ratio": ours["s_per_epoch"] / theirs["s_per_epoch"] if theirs else None}


def print_row(row):
    theirs = row["torch_s_per_epoch"] is not None
    torch_part = (f"{row['torch_s_per_epoch']:>15.2f}{row['ratio']:>12.2f}" if theirs
                  else f"{'-':>15}{'-':>12}")
    torch_memory = f"{row['torch_peak_mb']:>15.0f}" if theirs else f"{'-':>15}"
    print(f"{row['model']:<9}{row['batch']:>5}{row['ours_s_per_epoch']:>14.2f}{torch_part}"
          f"{row['ours_peak_mb']:>14.0f}{torch_memory}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.worker, args.model, args.steps, args.threads)
        return
    with_torch = torch_available()
    if not with_torch:
        print("note: PyTorch is not installed (pip install torch==2.13.0): only minissl is timed")
    if any(model in CIFAR_MODELS for model in args.models):
        print("note: CIFAR models train on random CIFAR-shaped images (the time of a step does "
              "not depend on the pixels), scaled to a 50,000-image epoch")
    rows = []
    for model_name in args.models:
        row = time_model(model_name, args, with_torch)
        full = FULL_TRAIN_SIZE[model_name]
        if model_name not in CIFAR_MODELS and row["n_train"] != full:
            print(f"note: the full MNIST was not found (set MINISSL_DATA); timing the "
                  f"{row['n_train']:,}-image sample and scaling to a {full:,}-image epoch")
        if not rows:
            print(HEADER)
        rows.append(row)
        print_row(row)
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"rows": rows, "steps_timed": args.steps, "rounds": args.rounds}, handle,
                      indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
