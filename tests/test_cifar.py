"""CIFAR-10 binary files: parsing, checksums, resolution, safe atomic extraction, download."""

import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

from minissl import cifar
from minissl.data import DataError

FILES = (*cifar.TRAIN_FILES, cifar.TEST_FILE)


def _records(count, seed):
    """`count` random CIFAR records (label byte, then 3,072 pixel bytes) as bytes."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 256, (count, cifar.RECORD_BYTES), dtype=np.uint8)
    table[:, 0] = rng.integers(0, 10, count)
    return table.tobytes()


@pytest.fixture(scope="module")
def fake_files():
    """Six full-size .bin files of random records: name -> bytes (30.7 MB each)."""
    return {name: _records(cifar.RECORDS_PER_FILE, seed) for seed, name in enumerate(FILES)}


def _write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def _checksums(files):
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in files.items()}


def test_parse_batch_splits_label_and_channel_planes():
    table = np.zeros((2, cifar.RECORD_BYTES), np.uint8)
    table[:, 0] = [3, 9]
    table[1, 1:1025] = 10  # red plane of the second image
    table[1, 1025:2049] = 20  # green
    table[1, 2049:] = 30  # blue
    images, labels = cifar.parse_batch(table.tobytes(), records=2)
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [3, 9]
    assert images[1, :, 5, 7].tolist() == [10, 20, 30]


def test_truncated_file_is_named(tmp_path, fake_files):
    files = dict(fake_files, **{"data_batch_3.bin": fake_files["data_batch_3.bin"][:-100]})
    _write(tmp_path, files)
    with pytest.raises(DataError, match=r"data_batch_3\.bin: truncated"):
        cifar.load_cifar10_directory(tmp_path, checksums=None)


def test_corrupt_file_fails_its_checksum_by_name(tmp_path, fake_files):
    files = dict(fake_files)
    corrupt = bytearray(files["test_batch.bin"])
    corrupt[12345] ^= 0xFF
    files["test_batch.bin"] = bytes(corrupt)
    _write(tmp_path, files)
    with pytest.raises(DataError, match=r"test_batch\.bin: SHA-256"):
        cifar.load_cifar10_directory(tmp_path, checksums=_checksums(fake_files))


def test_the_real_checksums_refuse_other_files(tmp_path, fake_files):
    _write(tmp_path, fake_files)
    with pytest.raises(DataError, match=r"data_batch_1\.bin: SHA-256 .* not the canonical"):
        cifar.load_cifar10_directory(tmp_path)


def test_missing_files_are_listed(tmp_path, fake_files):
    _write(tmp_path, {name: fake_files[name] for name in cifar.TRAIN_FILES[:4]})
    with pytest.raises(DataError, match="missing CIFAR-10 binary files data_batch_5.bin, "
                                        "test_batch.bin"):
        cifar.load_cifar10_directory(tmp_path)


def test_minissl_data_folder_is_found_with_the_archive_layout(tmp_path, fake_files, monkeypatch):
    _write(tmp_path / "cifar10" / cifar.CIFAR10_FOLDER, fake_files)
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path))
    dataset = cifar.cifar10(cache_dir=tmp_path / "cache", checksums=_checksums(fake_files))
    assert dataset.train_images.shape == (50000, 3, 32, 32)
    assert dataset.test_labels.shape == (10000,)
    first = np.frombuffer(fake_files["data_batch_2.bin"][:cifar.RECORD_BYTES], np.uint8)
    np.testing.assert_array_equal(dataset.train_images[10000].reshape(-1), first[1:])
    assert dataset.train_labels[10000] == first[0]


def test_nothing_found_offline_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"not found; looked in .*data/cifar10.*cache.*"
                                        r"download=True"):
        cifar.cifar10(cache_dir=tmp_path / "cache")


def _archive(path, files, extra=None):
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, raw in {**files, **(extra or {})}.items():
            member = tarfile.TarInfo(name if name.startswith("..") else
                                     f"{cifar.CIFAR10_FOLDER}/{name}")
            member.size = len(raw)
            archive.addfile(member, io.BytesIO(raw))
    return path


def test_download_extracts_verifies_and_leaves_no_temporary_files(tmp_path, fake_files,
                                                                  monkeypatch):
    monkeypatch.delenv("MINISSL_DATA", raising=False)
    archive = _archive(tmp_path / "cifar-10-binary.tar.gz", fake_files)
    cache = tmp_path / "cache"
    dataset = cifar.cifar10(cache_dir=cache, download=True, url=archive.as_uri(),
                            checksums=_checksums(fake_files))
    assert dataset.source == str(cache / cifar.CIFAR10_FOLDER)
    assert sorted(os.listdir(cache)) == [cifar.CIFAR10_FOLDER]  # no archive, no staging folder
    assert sorted(os.listdir(cache / cifar.CIFAR10_FOLDER)) == sorted(FILES)


def test_extraction_refuses_paths_outside_the_target_and_keeps_nothing(tmp_path, fake_files):
    archive = _archive(tmp_path / "evil.tar.gz", fake_files, extra={"../escaped.bin": b"x"})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="outside"):
        cifar.extract_archive(archive, cache, checksums=_checksums(fake_files))
    assert os.listdir(cache) == []
    assert not (tmp_path / "escaped.bin").exists()


def test_a_corrupt_archive_member_leaves_nothing_behind(tmp_path, fake_files):
    files = dict(fake_files, **{"data_batch_4.bin": fake_files["data_batch_4.bin"][:500]})
    archive = _archive(tmp_path / "short.tar.gz", files)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"data_batch_4\.bin"):
        cifar.extract_archive(archive, cache, checksums=_checksums(fake_files))
    assert os.listdir(cache) == []


def test_a_broken_download_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        cifar.download_cifar10(tmp_path, url=(tmp_path / "absent.tar.gz").as_uri())
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.environ.get("MINISSL_DATA") or not os.path.isdir(
    os.path.join(os.environ.get("MINISSL_DATA", ""), "cifar10")),
    reason="the canonical CIFAR-10 is not under $MINISSL_DATA/cifar10")
def test_the_canonical_files_pass_their_checksums_and_are_balanced():
    dataset = cifar.cifar10()
    assert dataset.train_images.shape == (50000, 3, 32, 32)
    assert np.bincount(dataset.train_labels).tolist() == [5000] * 10
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
