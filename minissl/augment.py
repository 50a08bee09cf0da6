"""The CIFAR input pipeline: per-channel normalization and the usual training augmentation.

    normalize:  x <- (x / 255 - mean_c) / std_c for each channel c, the statistics taken
                from the training images (`channel_statistics`);
    augment:    a random 32x32 crop of the image zero-padded by 4 pixels on every side, then
                a horizontal flip with probability 1/2 (He et al. 2016, section 4.2, for
                ResNets on CIFAR-10), both drawn from a seeded Generator; or the flip alone
                (`random_flip`; for the ConvNet it fit the training set better but tested
                no better than crops + flips: docs/journal.md).

Both run on a whole batch at once: the crop and the flip are one fancy-indexing gather, the
flip folded into the column index, so no Python loop runs per image. Measured cost:
`python -m benchmarks.input_pipeline` (docs/journal.md).
"""

import numpy as np

PAD = 4


def channel_statistics(images):
    """Mean and standard deviation of each channel over a set of uint8 images, in [0, 1] units.

    Shapes: images (N, C, H, W) uint8 -> mean (C,), std (C,) float32.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"channel_statistics expects uint8 images (N, C, H, W), got "
                         f"{images.dtype} {images.shape}")
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), 5000):  # float64 sums, a slice at a time
        part = images[start:start + 5000].astype(np.float64) / 255
        total += part.sum(axis=(0, 2, 3))
        squares += (part * part).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    return mean.astype(np.float32), np.sqrt(squares / count - mean * mean).astype(np.float32)


def normalize(images, mean, std):
    """uint8 images -> float32, each channel shifted by its mean and scaled by 1/std.

    Shapes: images (N, C, H, W) uint8, mean and std (C,) -> (N, C, H, W) float32.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"normalize expects uint8 images (N, C, H, W), got "
                         f"{images.dtype} {images.shape}")
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    scale = 1 / (255 * std)
    shift = np.asarray(mean, np.float32).reshape(1, -1, 1, 1) / std
    out = np.empty(images.shape, np.float32)
    for start in range(0, len(images), 1000):  # in place, a slice at a time: no temporaries
        part = out[start:start + 1000]
        np.multiply(images[start:start + 1000], scale, out=part)  # x / (255 std) ...
        part -= shift  # ... - mean / std
    return out


def random_crop_flip(images, rng, pad=PAD):
    """Random crops from the zero-padded images, each flipped left-right with probability 1/2.

    Shapes: images (B, C, H, W) -> (B, C, H, W), same dtype. `rng` is a numpy Generator;
    the same seed gives the same crops and flips. Zero padding means the padded border is
    0 in the units of `images` (after `normalize`, the channel mean).
    """
    if images.ndim != 4:
        raise ValueError(f"random_crop_flip expects images (B, C, H, W), got {images.shape}")
    batch, channels, height, width = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    top = rng.integers(0, 2 * pad + 1, batch)  # (B,)
    left = rng.integers(0, 2 * pad + 1, batch)
    flip = rng.random(batch) < 0.5
    rows = top[:, None] + np.arange(height)  # (B, H)
    columns = np.where(flip[:, None], np.arange(width)[::-1], np.arange(width))  # (B, W)
    columns = left[:, None] + columns
    return padded[np.arange(batch)[:, None, None, None], np.arange(channels)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]  # (B, C, H, W)


def random_flip(images, rng):
    """Each image flipped left-right with probability 1/2 (no crop).

    Shapes: images (B, C, H, W) -> (B, C, H, W), same dtype; a new array. `rng` is a numpy
    Generator; the same seed gives the same flips.
    """
    if images.ndim != 4:
        raise ValueError(f"random_flip expects images (B, C, H, W), got {images.shape}")
    flip = rng.random(images.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], images[..., ::-1], images)


# the training augmentations a demo can choose by name (--augment); None: the images as they are
AUGMENTATIONS = {"crop-flip": random_crop_flip, "flip": random_flip, "none": None}
