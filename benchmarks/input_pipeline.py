"""What the CIFAR input pipeline costs, against the training it feeds.

    python -m benchmarks.input_pipeline                    # ConvNet, batch 128
    python -m benchmarks.input_pipeline --model resnet20 --json out.json
    python -m benchmarks.input_pipeline --help

Times, for one epoch of 50,000 images in batches: the random crop + flip of
`minissl.augment` on normalized float32 images (the per-batch work of a training loop; the
normalization itself runs once per run, also timed), and a few training steps of the model
(median, scaled to the same epoch). Prints both and the pipeline's share of the epoch.
Uses CIFAR-10 when `minissl.cifar` finds it, random images of its shape otherwise.
"""

import argparse
import json
import sys
import time

import numpy as np

from minissl.atomic import atomic_file

EPOCH_IMAGES = 50000


def load_images():
    """uint8 images (N, 3, 32, 32) and where they came from."""
    from minissl import cifar
    from minissl.data import DataError

    try:
        dataset = cifar.cifar10()
        return dataset.train_images, "CIFAR-10"
    except DataError:
        images = np.random.default_rng(0).integers(0, 256, (EPOCH_IMAGES, 3, 32, 32), np.uint8)
        return images, "random images of CIFAR's shape (CIFAR-10 not found)"


def pipeline_seconds(images, batch):
    """(normalize s, crop+flip s per epoch): one normalization, then an epoch of batches."""
    from minissl import augment

    start = time.perf_counter()
    mean, std = augment.channel_statistics(images)
    normalized = augment.normalize(images, mean, std)
    normalize_seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    order = rng.permutation(len(normalized))
    start = time.perf_counter()
    for first in range(0, EPOCH_IMAGES, batch):
        augment.random_crop_flip(normalized[order[first:first + batch] % len(normalized)], rng)
    return normalize_seconds, time.perf_counter() - start


def training_seconds(model_name, batch, steps):
    """A training epoch's seconds: the median of `steps` steps (after 3 warm-up) times steps."""
    from benchmarks.profile_step import build_model, make_step

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    step = make_step(build_model(model_name))
    for _ in range(3):
        step(inputs, labels)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(inputs, labels)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * -(-EPOCH_IMAGES // batch)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["convnet", "resnet20"], default="convnet",
                        help="the model whose training epoch the pipeline is compared with")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed (default 5)")
    parser.add_argument("--json", type=str, metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    images, source = load_images()
    normalize_s, augment_s = pipeline_seconds(images, args.batch)
    train_s = training_seconds(args.model, args.batch, args.steps)
    result = {"source": source, "model": args.model, "batch": args.batch,
              "normalize_s_once": normalize_s, "crop_flip_s_per_epoch": augment_s,
              "train_s_per_epoch": train_s, "share": augment_s / train_s}
    print(f"data: {source}")
    print(f"normalize (once per run):        {normalize_s:8.2f} s")
    print(f"crop + flip, one epoch:          {augment_s:8.2f} s")
    print(f"{args.model} training, one epoch:  {train_s:8.2f} s (median of {args.steps} steps)")
    print(f"crop + flip share of the epoch:  {result['share']:8.1%}")
    if args.json:
        with atomic_file(args.json) as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
