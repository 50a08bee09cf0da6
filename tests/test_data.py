import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from minissl import data


def idx_bytes(array):
    """Encode a uint8 array as IDX bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_mnist(folder, seed, compress=True):
    """Write four small, valid MNIST-shaped IDX files; return their SHA-256 table."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 6),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4)}
    checksums = {}
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        checksums[stem] = hashlib.sha256(raw).hexdigest()
        target = folder / (f"{stem}.gz" if compress else stem)
        target.write_bytes(gzip.compress(raw) if compress else raw)
    return checksums


# ---- IDX reader -------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, rng, compress):
    array = rng.integers(0, 256, (3, 5, 7)).astype(np.uint8)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(idx_bytes(array)) if compress else idx_bytes(array))
    np.testing.assert_array_equal(data.read_idx(path), array)


def test_read_idx_other_dtypes():
    values = np.array([[1.5, -2.0]], dtype=">f4")
    raw = bytes([0, 0, 0x0D, 2]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + values.tobytes()
    np.testing.assert_array_equal(data.parse_idx(raw), [[1.5, -2.0]])


def test_truncated_idx_names_the_file_and_the_sizes(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-2])
    with pytest.raises(data.DataError,
                       match=r"short.idx: truncated: dimensions \(2, 3\) need 6 data bytes, found 4"):
        data.read_idx(path)


def test_wrong_magic_is_rejected(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(data.DataError, match="bad.idx: not an IDX file"):
        data.read_idx(path)


def test_wrong_size_with_trailing_bytes_is_rejected(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"\x00")
    with pytest.raises(data.DataError, match="trailing bytes"):
        data.read_idx(path)


def test_unknown_dtype_code_is_rejected():
    with pytest.raises(data.DataError, match="dtype code 0x07"):
        data.parse_idx(bytes([0, 0, 7, 1, 0, 0, 0, 0]), "odd")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))[:30])
    with pytest.raises(data.DataError, match="cut.gz: corrupt or truncated gzip"):
        data.read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(data.DataError, match="file not found"):
        data.read_idx(tmp_path / "nothing.idx")


# ---- MNIST resolution -------------------------------------------------------------
def test_explicit_directory_wins_and_accepts_raw_files(tmp_path, no_mnist_anywhere, monkeypatch):
    checksums = write_fake_mnist(tmp_path / "mine", seed=1, compress=False)
    write_fake_mnist(tmp_path / "env" / "mnist", seed=2)
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path / "env"))
    loaded = data.mnist(tmp_path / "mine", checksums=checksums)
    assert loaded.source == str(tmp_path / "mine")
    assert loaded.train_images.shape == (6, 28, 28) and loaded.test_labels.shape == (4,)


def test_minissl_data_comes_before_the_cache(tmp_path, no_mnist_anywhere, monkeypatch):
    env_sums = write_fake_mnist(tmp_path / "env" / "mnist", seed=2)
    write_fake_mnist(tmp_path / "cache", seed=3)
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path / "env"))
    loaded = data.mnist(cache_dir=tmp_path / "cache", download=False, checksums=env_sums)
    assert loaded.source == str(tmp_path / "env" / "mnist")


def test_cache_is_used_when_minissl_data_is_unset(tmp_path, no_mnist_anywhere):
    checksums = write_fake_mnist(tmp_path / "cache", seed=3)
    loaded = data.mnist(cache_dir=tmp_path / "cache", download=False, checksums=checksums)
    assert loaded.source == str(tmp_path / "cache")


def test_checksum_mismatch_in_the_cache_names_the_file(tmp_path, no_mnist_anywhere):
    checksums = write_fake_mnist(tmp_path / "cache", seed=1)
    checksums["t10k-labels-idx1-ubyte"] = "0" * 64
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 .* expected 0000"):
        data.mnist(cache_dir=tmp_path / "cache", download=False, checksums=checksums)


def test_an_explicit_folder_of_other_idx_files_is_used_and_named_after_it(tmp_path):
    """--data with a user's own IDX set in MNIST's layout (Fashion-MNIST, say): structure
    checked, not refused for its checksum, and never called MNIST."""
    write_fake_mnist(tmp_path / "fashion", seed=1)
    with pytest.warns(data.NotCanonicalMnistWarning, match="not the canonical MNIST"):
        loaded = data.mnist(tmp_path / "fashion")
    assert loaded.name == "fashion (IDX files in MNIST's layout)"
    assert loaded.train_images.shape == (6, 28, 28)


def test_an_explicit_folder_matching_the_checksums_is_mnist(tmp_path, recwarn):
    checksums = write_fake_mnist(tmp_path / "mine", seed=1)
    assert data.mnist(tmp_path / "mine", checksums=checksums).name == "MNIST"
    assert not [w for w in recwarn if issubclass(w.category, data.NotCanonicalMnistWarning)]


@pytest.mark.parametrize("stem, array, message", [
    ("train-labels-idx1-ubyte", np.full(6, 12), r"train labels go up to 12; .* 0-9"),
    ("t10k-images-idx3-ubyte", np.zeros((4, 32, 32)), r"test images have shape \(4, 32, 32\)"),
    ("t10k-labels-idx1-ubyte", np.zeros(3), r"test images \(4, 28, 28\) and labels \(3,\) do not pair"),
])
def test_an_explicit_folder_is_checked_for_mnists_layout(tmp_path, stem, array, message):
    write_fake_mnist(tmp_path / "mine", seed=1, compress=False)
    (tmp_path / "mine" / stem).write_bytes(idx_bytes(array))
    with pytest.raises(data.DataError, match=message):
        data.mnist(tmp_path / "mine")


def test_minissl_data_may_name_the_mnist_folder_itself(tmp_path, no_mnist_anywhere, monkeypatch):
    checksums = write_fake_mnist(tmp_path / "env" / "mnist", seed=2)
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path / "env" / "mnist"))
    loaded = data.mnist(cache_dir=tmp_path / "cache", download=False, checksums=checksums)
    assert loaded.source == str(tmp_path / "env" / "mnist")


def test_the_fallback_note_names_every_place_checked(tmp_path, no_mnist_anywhere, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path / "elsewhere"))
    with pytest.warns(data.MnistFallbackWarning) as caught:
        data.mnist(cache_dir=tmp_path / "cache", download=False)
    message = str(caught[0].message)
    assert f"$MINISSL_DATA/mnist {tmp_path / 'elsewhere' / 'mnist'}: no such folder" in message
    assert f"$MINISSL_DATA {tmp_path / 'elsewhere'}: missing train-images-idx3-ubyte" in message
    assert f"the cache {tmp_path / 'cache'}: no such folder" in message
    assert "downloads are off" in message


def test_an_unusable_home_falls_back_with_a_note(tmp_path, no_mnist_anywhere, monkeypatch):
    """HOME naming a file: the cache cannot be created; no traceback, a note says why."""
    (tmp_path / "home_is_a_file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "home_is_a_file"))
    with pytest.warns(data.MnistFallbackWarning, match="cache folder .* is not writable"):
        loaded = data.mnist(mirrors=("file:///nonexistent-mirror/",))
    assert loaded.name == "MNIST sample"


def test_explicit_directory_with_missing_files_lists_them(tmp_path):
    write_fake_mnist(tmp_path / "mine", seed=1)
    (tmp_path / "mine" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="missing MNIST files t10k-images-idx3-ubyte"):
        data.mnist(tmp_path / "mine")


def test_download_from_a_mirror_fills_the_cache_atomically(tmp_path, no_mnist_anywhere):
    checksums = write_fake_mnist(tmp_path / "mirror", seed=4)
    mirrors = ("file:///nonexistent-mirror/", (tmp_path / "mirror").as_uri() + "/")
    loaded = data.mnist(cache_dir=tmp_path / "cache", mirrors=mirrors, checksums=checksums)
    assert loaded.source == str(tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{s}.gz" for s in checksums)


def test_corrupt_download_leaves_no_file_and_falls_back_to_the_sample(tmp_path, no_mnist_anywhere):
    checksums = write_fake_mnist(tmp_path / "mirror", seed=4)
    checksums["train-labels-idx1-ubyte"] = "f" * 64
    with pytest.warns(data.MnistFallbackWarning, match="bundled 10,000-digit sample"):
        loaded = data.mnist(cache_dir=tmp_path / "cache", checksums=checksums,
                            mirrors=((tmp_path / "mirror").as_uri() + "/",))
    assert loaded.name == "MNIST sample"
    leftovers = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert not any("train-labels" in name or name.endswith(".part") for name in leftovers)


def test_offline_with_nothing_found_uses_the_bundled_sample(tmp_path, no_mnist_anywhere):
    with pytest.warns(data.MnistFallbackWarning):
        loaded = data.mnist(cache_dir=tmp_path / "cache", download=False)
    assert (len(loaded.train_labels), len(loaded.test_labels)) == (8000, 2000)


def test_bundled_sample_is_real_varied_and_deterministic():
    first, second = data.mnist_sample(), data.mnist_sample()
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    assert first.train_images.dtype == np.uint8 and first.train_images.shape == (8000, 28, 28)
    assert np.bincount(first.test_labels, minlength=10).min() > 100  # every class in the test split
    assert 25 < first.train_images.mean() < 45  # MNIST's mean pixel is about 33


@pytest.mark.skipif(not os.environ.get("MINISSL_DATA"), reason="needs the full MNIST in MINISSL_DATA")
def test_bundled_sample_equals_the_first_10000_training_digits_sorted_by_label():
    full = data.load_mnist_directory(Path(os.environ["MINISSL_DATA"]) / "mnist")
    with np.load(data.SAMPLE_PATH, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    order = np.argsort(full.train_labels[:10000], kind="stable")
    np.testing.assert_array_equal(images, full.train_images[:10000][order])
    np.testing.assert_array_equal(labels, full.train_labels[:10000][order])


# ---- batches ----------------------------------------------------------------------
def test_batches_cover_every_example_once_in_a_seeded_order():
    inputs, labels = np.arange(10)[:, None], np.arange(10)
    first = [b for _, b in data.batches(inputs, labels, 4, np.random.default_rng(0))]
    again = [b for _, b in data.batches(inputs, labels, 4, np.random.default_rng(0))]
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(np.concatenate(first)) == list(range(10))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(np.concatenate(first), np.arange(10))


def test_batches_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="5 inputs but 4 labels"):
        next(data.batches(np.zeros(5), np.zeros(4), 2))


def test_to_float_images_scales_and_flattens():
    images = np.full((2, 28, 28), 255, dtype=np.uint8)
    out = data.to_float_images(images)
    assert out.shape == (2, 784) and out.dtype == np.float32 and out.max() == 1.0
    with pytest.raises(TypeError, match="uint8"):
        data.to_float_images(images.astype(np.float32))
