"""One timed CIFAR-10 training epoch on a GPU: minissl's CuPy backend against PyTorch (CUDA).

    python -m benchmarks.gpu_epoch                          # convnet and resnet20
    python -m benchmarks.gpu_epoch --models resnet20 --json gpu_epoch.json
    python -m benchmarks.gpu_epoch --help

Needs an NVIDIA GPU and CuPy (`pip install -e ".[gpu]"`); PyTorch with CUDA is optional and,
when present, trains the same model (the twins in `benchmarks.train_throughput`) on the same
data in the same process, one after the other, so the two times come from one card in one run.
The data is 50,000 random images of CIFAR's shape with random labels, made on the GPU (a step
costs the same whatever the pixels, and the GPU machine cannot see the CIFAR-10 files); batch
128, SGD with momentum 0.9 and weight decay 5e-4, float32. After WARMUP_STEPS steps (CuPy
compiles its kernels, the memory pools fill), the clock runs over one whole epoch of 391 steps
and stops after the GPU has finished (a synchronize), so the figure is the epoch a user waits for.
"""

import argparse
import json
import sys
import time

import numpy as np

from minissl.atomic import atomic_file

MODELS = ("convnet", "resnet20")
TRAIN_SIZE, BATCH, WARMUP_STEPS = 50000, 128, 5


def _batches(count, batch):
    return [(start, min(start + batch, count)) for start in range(0, count, batch)]


def time_epoch(step, count, synchronize, before_clock=None):
    """WARMUP_STEPS untimed calls of step(start, stop), then one timed epoch over `count`
    images; returns (seconds, the last step's return value). `synchronize()` waits for the
    GPU before each clock reading; `before_clock()` runs just before the clock starts."""
    batches = _batches(count, BATCH)
    for start, stop in batches[:WARMUP_STEPS]:
        step(start, stop)
    synchronize()
    if before_clock is not None:
        before_clock()
    began = time.perf_counter()
    for start, stop in batches:
        last = step(start, stop)
    synchronize()
    return time.perf_counter() - began, last


def time_ours(model_name, images, labels):
    """Seconds for one epoch of minissl on the GPU; also the final loss and the MB that
    CuPy's memory pool holds for the model's training (the data excluded). The pool keeps
    freed blocks for reuse, so this is at least the peak in use, near it in practice."""
    import cupy

    import minissl
    from benchmarks.profile_step import build_model
    from minissl import Tensor, ops, optim

    minissl.set_backend("cupy")
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()  # what an earlier model left cached
    data_bytes = pool.total_bytes()  # the images and labels
    model = build_model(model_name).to_backend()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(start, stop):
        loss = ops.cross_entropy(model(Tensor(images[start:stop])), labels[start:stop])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    seconds, loss = time_epoch(step, len(labels), cupy.cuda.get_current_stream().synchronize)
    pool_mb = (pool.total_bytes() - data_bytes) / 2 ** 20  # held by the pool, data excluded
    return seconds, float(minissl.to_numpy(loss.data)), pool_mb


def time_torch(model_name, images, labels):
    """Seconds for one epoch of the PyTorch twin on the GPU; the final loss; peak MB."""
    import torch

    from benchmarks.train_throughput import torch_model

    device = torch.device("cuda")
    model = torch_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.as_tensor(images, device=device)  # shares the CuPy memory (DLPack)
    y = torch.as_tensor(labels, device=device)

    def step(start, stop):
        loss = torch.nn.functional.cross_entropy(model(x[start:stop]), y[start:stop])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    seconds, loss = time_epoch(step, len(labels), torch.cuda.synchronize,
                               torch.cuda.reset_peak_memory_stats)
    return seconds, float(loss.item()), torch.cuda.max_memory_allocated() / 2 ** 20


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_epoch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="which CIFAR-10 models to time (default: both)")
    parser.add_argument("--no-torch", action="store_true", help="time minissl only")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the rows as JSON")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as error:  # no CuPy, no driver or no GPU
        sys.exit(f"error: this benchmark needs CuPy and an NVIDIA GPU ({error})")
    with_torch = False
    if not args.no_torch:
        try:
            import torch

            with_torch = torch.cuda.is_available()
        except ImportError:
            pass
    rng = cupy.random.default_rng(0)
    images = rng.standard_normal((TRAIN_SIZE, 3, 32, 32), dtype=cupy.float32)
    labels = rng.integers(0, 10, TRAIN_SIZE).astype(cupy.int64)
    print(f"{name}: one epoch of {TRAIN_SIZE:,} random CIFAR-shaped images, batch {BATCH}")
    print(f"{'model':<9}{'ours s':>9}{'torch s':>9}{'ours/torch':>12}{'ours pool MB':>14}"
          f"{'torch peak MB':>15}{'ours loss':>11}{'torch loss':>12}")
    rows = []
    for model_name in args.models:
        ours_s, ours_loss, ours_mb = time_ours(model_name, images, labels)
        torch_s = torch_loss = torch_mb = None
        if with_torch:
            torch_s, torch_loss, torch_mb = time_torch(model_name, images, labels)
        row = {"model": model_name, "device": name, "ours_s_per_epoch": ours_s,
               "torch_s_per_epoch": torch_s, "ratio": ours_s / torch_s if torch_s else None,
               "ours_pool_mb": ours_mb, "torch_peak_mb": torch_mb,
               "ours_last_loss": ours_loss if np.isfinite(ours_loss) else None,
               "torch_last_loss": torch_loss}
        rows.append(row)
        fmt = (lambda value, spec: format(value, spec) if value is not None else "-")
        print(f"{model_name:<9}{ours_s:>9.2f}{fmt(torch_s, '>9.2f'):>9}"
              f"{fmt(row['ratio'], '>12.2f'):>12}{ours_mb:>14.0f}{fmt(torch_mb, '>15.0f'):>15}"
              f"{ours_loss:>11.3f}{fmt(torch_loss, '>12.3f'):>12}")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump({"rows": rows, "train_size": TRAIN_SIZE, "batch": BATCH}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
