"""The CIFAR input pipeline: normalization and seeded crop + flip."""

import numpy as np
import pytest

from minissl import augment


def test_normalized_channels_have_zero_mean_and_unit_std(rng):
    images = rng.integers(0, 256, (64, 3, 8, 8), dtype=np.uint8)
    images[:, 1] //= 4  # a darker channel
    mean, std = augment.channel_statistics(images)
    np.testing.assert_allclose(mean, (images / 255).mean(axis=(0, 2, 3)), rtol=1e-5)
    out = augment.normalize(images, mean, std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, rtol=1e-3)


def _find_crop(image, out, pad):
    """(top, left, flipped) of the crop of the padded image equal to out, or None."""
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    height, width = image.shape[1:]
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            window = padded[:, top:top + height, left:left + width]
            if np.array_equal(window, out):
                return top, left, False
            if np.array_equal(window[:, :, ::-1], out):
                return top, left, True
    return None


def test_every_output_is_a_crop_of_the_padded_image_and_flips_happen(rng):
    images = rng.standard_normal((40, 3, 6, 7)).astype(np.float32)
    out = augment.random_crop_flip(images, np.random.default_rng(5), pad=2)
    assert out.shape == images.shape and out.dtype == images.dtype
    found = [_find_crop(image, crop, 2) for image, crop in zip(images, out)]
    assert all(found)
    assert 5 < sum(flipped for _, _, flipped in found) < 35
    assert len({(top, left) for top, left, _ in found}) > 10


def test_the_same_seed_gives_the_same_batch(rng):
    images = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    first = augment.random_crop_flip(images, np.random.default_rng(1))
    np.testing.assert_array_equal(first, augment.random_crop_flip(images, np.random.default_rng(1)))
    assert not np.array_equal(first, augment.random_crop_flip(images, np.random.default_rng(2)))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="uint8 images"):
        augment.normalize(np.zeros((2, 3, 4, 4), np.float32), [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment.random_crop_flip(np.zeros((3, 4, 4)), np.random.default_rng(0))


def test_random_flip_keeps_or_mirrors_each_image(rng):
    images = rng.standard_normal((40, 3, 5, 6)).astype(np.float32)
    out = augment.random_flip(images, np.random.default_rng(3))
    assert out.shape == images.shape and out.dtype == images.dtype
    kept = [np.array_equal(a, b) for a, b in zip(images, out)]
    mirrored = [np.array_equal(a[..., ::-1], b) for a, b in zip(images, out)]
    assert all(k or m for k, m in zip(kept, mirrored))
    assert 5 < sum(mirrored) < 35
    np.testing.assert_array_equal(out, augment.random_flip(images, np.random.default_rng(3)))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment.random_flip(np.zeros((3, 4, 4)), np.random.default_rng(0))
