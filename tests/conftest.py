"""Shared fixtures (a local RNG, an environment with no MNIST anywhere, real images per input
shape) and the hypothesis profile."""

import os

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same examples every run (a red CI then always means a real failure);
# local runs keep exploring new random examples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# The runs the tests start write no report.html (drawing one takes 1-2 s, and the suite starts
# many short runs); the tests of the report turn it on (the `with_reports` fixture).
os.environ["MINISSL_REPORT"] = "0"


@pytest.fixture
def with_reports(monkeypatch):
    """Runs started in this test write report.html, as outside the tests."""
    monkeypatch.setenv("MINISSL_REPORT", "1")


class SSLStarts(list):
    """The state dicts SSL rows started from, in order (the `ssl_starts` fixture)."""

    class Stop(Exception):
        """Ends the run at the first SSL row, once its starting weights are kept."""


@pytest.fixture
def ssl_starts(monkeypatch):
    """Trainer.ssl replaced for this test: it keeps the weights the SSL row starts from (a
    state dict, appended to the returned list) and stops the run with `ssl_starts.Stop`."""
    from minissl import train

    starts = SSLStarts()

    def keep_and_stop(self, model, *args, **kwargs):
        starts.append(model.state_dict())
        raise SSLStarts.Stop

    monkeypatch.setattr(train.Trainer, "ssl", keep_and_stop)
    return starts


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def no_mnist_anywhere(monkeypatch, tmp_path):
    """Unset MINISSL_DATA and point HOME at an empty folder, so nothing is found or cached."""
    monkeypatch.delenv("MINISSL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(params=["numpy", "numba"])
def cpu_backend(request):
    """Run the test once per CPU backend, restoring the previous backend afterwards."""
    import minissl

    previous = minissl.get_backend()
    minissl.set_backend(request.param)
    yield request.param
    minissl.set_backend(previous)


@pytest.fixture(scope="session")
def images():
    """Real images per input shape: MNIST test digits (bundled sample) and CIFAR-10 test
    images ($MINISSL_DATA; None when CIFAR-10 is not on this machine)."""
    from minissl import cifar, data

    digits = data.to_float_images(data.mnist_sample().test_images[:64])
    try:
        colour = cifar.cifar10(None, download=False).test_images[:64].astype(np.float32) / 255
    except data.DataError:
        colour = None
    return {(784,): digits, (1, 28, 28): digits.reshape(-1, 1, 28, 28), (3, 32, 32): colour}
