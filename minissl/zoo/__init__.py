"""The model zoo: trained rows of minissl's own experiments, stored with the package, so that
anyone can check a row of the results in seconds instead of retraining it.

    from minissl import zoo
    zoo.available()                          # ["mnist_mlp/baseline", "mnist_mlp/ssl1", ...]
    model, info = zoo.load("mnist_mlp/ssl1")  # the compacted model and its record
    info["error"], info["command"], info["commit"]
    zoo.normalization("cifar_convnet/baseline")  # (mean, std) its input images need

Each entry is a model file written by minissl.save (architecture and weights in one .npz, no
pickle) and a JSON record beside it: the command that trained it, the commit, the seed, the
dataset, the test error measured when it was stored, what each layer keeps, and the SHA-256
of the model file, checked on every load. `scripts/build_zoo.py` makes entries from a
finished run's checkpoints; tests/test_zoo.py checks every entry's error on the full test set
against its record, to the image.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from minissl import serialize

FOLDER = Path(__file__).resolve().parent


class ZooError(ValueError):
    """An entry that does not exist, or whose file does not match its record."""


def available():
    """The names of the stored entries ("<experiment>/<row>"), sorted."""
    return sorted(f"{path.parent.name}/{path.stem}" for path in FOLDER.glob("*/*.json"))


def info(name):
    """The record of entry `name` (a dict; see the module docstring)."""
    path = FOLDER / f"{name}.json"
    if name not in available():
        raise ZooError(f"no zoo entry {name!r}; the zoo has {', '.join(available()) or 'none'}")
    return json.loads(path.read_text())


def normalization(name):
    """(mean, std) per input channel that entry `name`'s images are normalized with before
    the model sees them (x - mean) / std (minissl.augment.normalize), as float32 arrays of
    shape (C,); None for an entry whose inputs need nothing but the dataset's own scaling
    (the MNIST rows)."""
    dataset = info(name).get("dataset", {})
    if "mean" not in dataset:
        return None
    return (np.asarray(dataset["mean"], dtype=np.float32),
            np.asarray(dataset["std"], dtype=np.float32))


def sha256(path):
    """The SHA-256 of a file, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load(name):
    """(model, record) of entry `name`: the stored model in eval mode, after checking its
    file against the SHA-256 in its record (ZooError when they differ)."""
    record = info(name)
    path = FOLDER / f"{name}.npz"
    if sha256(path) != record["sha256"]:
        raise ZooError(f"{path}: its SHA-256 differs from the one recorded for {name!r}; the "
                       f"file was changed or damaged (reinstall minissl)")
    return serialize.load(path), record
