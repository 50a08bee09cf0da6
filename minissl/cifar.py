"""CIFAR-10: the binary version, found or downloaded, verified, and read without unpickling.

Where CIFAR-10 comes from, in order (docs/design.md, Data):
  1. an explicit directory passed by the caller (an error if the files are not there);
  2. $MINISSL_DATA/cifar10/  (read at call time);
  3. the user cache, ~/.cache/minissl/cifar10/;
  4. a download of the official binary archive into that cache, when asked for.
A directory holds the files either directly or in `cifar-10-batches-bin/`, as the archive
extracts. Offline with nothing found, `cifar10()` raises DataError saying where it looked
and how to get the data; there is no bundled fallback (a CIFAR sample would be too large).

Only the "binary version" is read: each of the six .bin files holds 10,000 records of one
label byte then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, each 32x32 row-major).
The "python version" is never used: unpickling a downloaded file runs its code. Every .bin
must match its SHA-256 (below; the same as ../shared/datasets/cifar10/SHA256SUMS).

Reference: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from minissl.data import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{index}.bin" for index in range(1, 6))
TEST_FILE = "test_batch.bin"
CIFAR10_SHA256 = {
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
RECORDS_PER_FILE = 10000
RECORD_BYTES = 1 + 3 * 32 * 32


@dataclasses.dataclass
class CifarData:
    """CIFAR-10 split into train and test.

    Shapes: images (N, 3, 32, 32) uint8 (channels red, green, blue), labels (N,) uint8 in
    0..9 (names in CLASSES); N is 50,000 for train and 10,000 for test.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str      # "CIFAR-10"
    source: str    # the folder the files came from, for reports


def parse_batch(raw, name="<bytes>", records=RECORDS_PER_FILE):
    """Split the bytes of one .bin file into images (N, 3, 32, 32) and labels (N,), uint8.

    Raises DataError naming `name` when the length is not `records` whole records or a
    label is not in 0..9.
    """
    expected = records * RECORD_BYTES
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{name}: {state}: {len(raw):,} bytes, expected {expected:,} "
                        f"({records:,} records of {RECORD_BYTES} bytes)")
    table = np.frombuffer(raw, dtype=np.uint8).reshape(records, RECORD_BYTES)
    labels = table[:, 0].copy()
    if labels.max() >= len(CLASSES):
        raise DataError(f"{name}: label {int(labels.max())} is not a CIFAR-10 class (0..9)")
    images = table[:, 1:].reshape(records, 3, 32, 32).copy()  # (N, 3072) -> (N, C, H, W)
    return images, labels


def batches_folder(directory):
    """The folder holding the .bin files: `directory` itself or its cifar-10-batches-bin/."""
    directory = Path(directory)
    nested = directory / CIFAR10_FOLDER
    return nested if nested.is_dir() else directory


def _has_files(directory):
    folder = batches_folder(directory)
    return all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def _read_verified(path, checksums):
    """The images and labels of one .bin file, after its SHA-256 check (unless None)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error})") from error
    if checksums is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != checksums[path.name]:
            raise DataError(f"{path}: SHA-256 is {digest}, expected {checksums[path.name]} "
                            f"(corrupt, truncated, or not the canonical CIFAR-10 binary file)")
    return parse_batch(raw, str(path))


def load_cifar10_directory(directory, checksums=CIFAR10_SHA256):
    """Load the six .bin files from `directory` (or its cifar-10-batches-bin/).

    `checksums=None` skips the SHA-256 check. Raises DataError naming the folder and every
    missing file, or the first file that fails.
    """
    folder = batches_folder(directory)
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 binary files {', '.join(missing)}")
    train = [_read_verified(folder / name, checksums) for name in TRAIN_FILES]
    test_images, test_labels = _read_verified(folder / TEST_FILE, checksums)
    return CifarData(np.concatenate([images for images, _ in train]),
                     np.concatenate([labels for _, labels in train]),
                     test_images, test_labels, name="CIFAR-10", source=str(folder))


def default_cache_dir():
    """Return the user cache directory for CIFAR-10, ~/.cache/minissl/cifar10."""
    return Path.home() / ".cache" / "minissl" / "cifar10"


def _safe_members(archive, target):
    """The archive's regular files and folders, refusing any path that leaves `target`."""
    target = Path(target).resolve()
    members = []
    for member in archive.getmembers():
        path = (target / member.name).resolve()
        if target != path and target not in path.parents:
            raise DataError(f"archive member {member.name!r} would be written outside {target}")
        if not (member.isfile() or member.isdir()):
            raise DataError(f"archive member {member.name!r} is not a plain file or folder")
        members.append(member)
    return members


def extract_archive(archive_path, cache_dir, checksums=CIFAR10_SHA256):
    """Extract the binary archive into `cache_dir`/cifar-10-batches-bin, atomically.

    The archive is unpacked into a temporary folder beside the target, every .bin is
    verified, and only then is the folder renamed into place: an interrupted or corrupt
    extraction leaves nothing behind. Members that would land outside the folder (absolute
    paths, "..", links) are refused (and tarfile's "data" filter applies where it exists).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".extract."))
    try:
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                members = _safe_members(archive, staging)
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(staging, members=members, **options)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{archive_path}: not a readable CIFAR-10 archive ({error})") from error
        load_cifar10_directory(staging, checksums)  # raises DataError naming a bad file
        target = cache_dir / CIFAR10_FOLDER
        if target.exists():
            shutil.rmtree(target)
        os.replace(batches_folder(staging), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache_dir / CIFAR10_FOLDER


def download_cifar10(cache_dir, url=CIFAR10_URL, checksums=CIFAR10_SHA256):
    """Download the official binary archive (about 160 MB) and extract it into `cache_dir`.

    The archive goes to a temporary file that is removed afterwards, whatever happens.
    Raises DataError when the download or the verification fails.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=".cifar10.", suffix=".tar.gz")
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out)
        except OSError as error:
            raise DataError(f"could not download {url}: {error}") from error
        return extract_archive(temporary, cache_dir, checksums)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def cifar10(directory=None, download=False, cache_dir=None, url=CIFAR10_URL,
            checksums=CIFAR10_SHA256):
    """Return CIFAR-10 as CifarData, resolved in the order of the module docstring.

    directory: explicit folder with the six .bin files (or their cifar-10-batches-bin/).
    download:  fetch the official archive into the cache when nothing is found locally.
    Raises DataError when a found file is corrupt, truncated or fails its checksum, and when
    nothing is found (naming every place it looked and how to get the data).
    """
    if directory is not None:
        return load_cifar10_directory(directory, checksums)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    places = [Path(os.environ["MINISSL_DATA"]) / "cifar10"] if os.environ.get("MINISSL_DATA") else []
    places.append(cache_dir)
    for folder in places:
        if _has_files(folder):
            return load_cifar10_directory(folder, checksums)
    if download:
        return load_cifar10_directory(download_cifar10(cache_dir, url, checksums), checksums)
    looked = ", ".join(str(batches_folder(folder)) for folder in places)
    raise DataError(f"CIFAR-10 (binary version) not found; looked in {looked}. Download it "
                    f"with download=True (or --download in the demos), or get {url}, "
                    f"extract it and point MINISSL_DATA at the folder that holds cifar10/")
