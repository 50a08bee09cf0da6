"""minissl.zoo: every stored entry loads (its file matching its SHA-256) and has, on the full
test set, exactly the error its record states; a damaged file or an unknown name is refused."""

import shutil

import numpy as np
import pytest

from minissl import augment, cifar, data, train, zoo
from minissl.experiments import cli


@pytest.fixture(scope="module")
def mnist_test():
    try:
        dataset = data.mnist(download=False)
    except data.DataError:
        dataset = None
    if dataset is None or dataset.name != "MNIST" or len(dataset.test_labels) != 10000:
        pytest.skip("the full MNIST is not on this machine (set MINISSL_DATA)")
    split, _ = cli.mnist_split(dataset)
    return split[2], split[3]


def test_the_zoo_holds_the_mlp_rows():
    assert {"mnist_mlp/baseline", "mnist_mlp/ssl1", "mnist_mlp/ssl2"} <= set(zoo.available())


@pytest.mark.parametrize("name", [name for name in zoo.available() if name.startswith("mnist")])
def test_every_entry_has_exactly_its_recorded_error(name, mnist_test):
    model, record = zoo.load(name)
    inputs, labels = mnist_test
    assert len(labels) == record["test_images"]
    assert train.error_rate(model, inputs, labels) == record["error"]
    assert record["command"] and record["commit"] and record["sha256"]
    if record["compacted"]:
        assert record["params"] == sum(parameter.data.size for parameter in model.parameters())


@pytest.fixture(scope="module")
def cifar_test():
    try:
        dataset = cifar.cifar10(None, download=False)
    except data.DataError:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    return dataset.test_images, dataset.test_labels.astype(np.int64)


@pytest.mark.parametrize("name", [name for name in zoo.available() if name.startswith("cifar")])
def test_every_cifar_entry_has_exactly_its_recorded_error(name, cifar_test):
    model, record = zoo.load(name)
    images, labels = cifar_test
    mean, std = zoo.normalization(name)
    assert len(labels) == record["test_images"]
    assert train.error_rate(model, augment.normalize(images, mean, std), labels) == record["error"]
    assert record["command"] and record["commit"] and record["sha256"]


def test_a_damaged_file_and_an_unknown_name_are_refused(tmp_path, monkeypatch):
    shutil.copytree(zoo.FOLDER / "mnist_mlp", tmp_path / "mnist_mlp")
    monkeypatch.setattr(zoo, "FOLDER", tmp_path)
    path = tmp_path / "mnist_mlp" / "ssl1.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(zoo.ZooError, match="SHA-256 differs"):
        zoo.load("mnist_mlp/ssl1")
    with pytest.raises(zoo.ZooError, match="no zoo entry 'mnist_mlp/ssl9'"):
        zoo.info("mnist_mlp/ssl9")
    assert np.isfinite(zoo.info("mnist_mlp/baseline")["error"])
    assert zoo.normalization("mnist_mlp/baseline") is None
