"""minissl.zoo: every stored entry loads (its file matching its SHA-256) and has, on the full
test set, exactly the error its record states; a damaged file or an unknown name is refused."""

import json
import shutil

import numpy as np
import pytest

from minissl import Tensor, augment, cifar, compact, data, no_grad, train, zoo
from minissl.experiments import cli, mnist_mlp


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


def test_the_zoo_holds_the_mnist_rows_and_stays_small():
    assert {"mnist_mlp/baseline", "mnist_mlp/ssl1", "mnist_mlp/ssl2"} <= set(zoo.available())
    assert {f"mnist_lenet/{row}" for row in ("baseline", "row2", "row3", "row4", "row5")} <= set(
        zoo.available())
    sizes = [path.stat().st_size for path in zoo.FOLDER.glob("*/*.npz")]
    assert max(sizes) < 3 * 2**20 and sum(sizes) < 15 * 2**20


@pytest.mark.parametrize("name", [name for name in zoo.available() if name.startswith("mnist")])
def test_every_entry_has_exactly_its_recorded_error(name, mnist_test):
    model, record = zoo.load(name)
    inputs, labels = mnist_test
    if name.startswith("mnist_lenet"):
        inputs = inputs.reshape(-1, 1, 28, 28)
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


def test_a_compacted_mlp_row_expands_to_a_full_mlp_that_compacts_back_to_it():
    small, record = zoo.load("mnist_mlp/ssl2")
    sparse = mnist_mlp.sparse_from_compacted(small)
    again, _ = compact.compact(sparse)
    assert repr(again) == repr(small)
    inputs = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    with no_grad():
        expected = small(Tensor(inputs)).data
        np.testing.assert_allclose(sparse(Tensor(inputs)).data, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(again(Tensor(inputs)).data, expected, rtol=1e-5, atol=1e-5)
    assert mnist_mlp.chain_neurons(sparse) == record["neurons"]


def test_the_mlp_demo_from_the_zoo_prints_the_stored_rows_and_trains_nothing(
        mnist_test, tmp_path, monkeypatch, capsys, with_reports):
    monkeypatch.setattr(train.Trainer, "fit", lambda *args, **kwargs: pytest.fail("trained"))
    out = tmp_path / "run"
    mnist_mlp.main(["--from-zoo", "--timing-seconds", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.count("the same as the zoo's record") == 3 and "NOT" not in printed
    results = json.loads((out / "results.json").read_text())
    for row, name in zip(results["rows"], ["baseline", "ssl1", "ssl2"]):
        record = zoo.info(f"mnist_mlp/{name}")
        assert row["error"] == record["error"] and row["zoo"]["entry"] == f"mnist_mlp/{name}"
        if record["compacted"]:
            assert row["neurons"] == record["neurons"]
    assert (out / "report.html").exists() and (out / "sparsity.png").exists()
