"""The CuPy backend computes what the NumPy reference computes (needs CuPy and a GPU)."""

import numpy as np
import pytest

import minissl
from minissl import Tensor, models, ops, optim, ssl, to_numpy

pytestmark = pytest.mark.gpu


@pytest.fixture
def cupy_backend():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy installed but no usable GPU
        pytest.skip(f"no GPU: {error}")
    previous = minissl.get_backend()
    minissl.set_backend("cupy")
    yield cupy
    minissl.set_backend(previous)


def _step(model, x, labels, xp):
    """One SGD step with a group-lasso prox; returns (loss, gradients by name)."""
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(
        ssl.rules_for(model, ssl.GroupKind.FILTER, 0.05, layer_type=minissl.nn.Conv2d)))
    loss = ops.cross_entropy(model(Tensor(xp.asarray(x))), labels)
    optimizer.zero_grad()
    loss.backward()
    grads = {name: to_numpy(p.grad) for name, p in model.named_parameters()}
    optimizer.step()
    lasso.after_step(0.1)
    return float(to_numpy(loss.data)), grads


@pytest.mark.parametrize("builder, shape", [(models.lenet, (8, 1, 28, 28)),
                                            (models.cifar_convnet, (4, 3, 32, 32)),
                                            (lambda **kw: models.resnet_cifar(8, **kw), (4, 3, 32, 32))])
def test_training_step_on_the_gpu_equals_the_cpu_reference(cupy_backend, builder, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    labels = rng.integers(0, 10, shape[0])
    gpu_model = builder(dtype=np.float64).to_backend()
    gpu_loss, gpu_grads = _step(gpu_model, x, labels, cupy_backend)
    minissl.set_backend("numpy")
    cpu_model = builder(dtype=np.float64)
    cpu_loss, cpu_grads = _step(cpu_model, x, labels, np)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-10)
    for name, grad in cpu_grads.items():
        np.testing.assert_allclose(gpu_grads[name], grad, rtol=1e-7, atol=1e-10, err_msg=name)
    gpu_state, cpu_state = gpu_model.state_dict(), cpu_model.state_dict()
    for name, value in cpu_state.items():
        np.testing.assert_allclose(gpu_state[name], value, rtol=1e-7, atol=1e-10, err_msg=name)


def test_model_moves_to_the_gpu_and_back(cupy_backend):
    model = models.lenet().to_backend()
    assert all(type(p.data).__module__.startswith("cupy") for p in model.parameters())
    minissl.set_backend("numba")
    model.to_backend()
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())


def test_compacted_model_on_the_gpu_equals_the_sparse_model(cupy_backend):
    from minissl import no_grad
    from minissl.compact import compact

    model = models.lenet(dtype=np.float64)
    model[0].weight.data[5:], model[0].bias.data[5:] = 0, 0      # filters
    model[2].weight.data[:, :, 0, :] = 0                        # shape columns: GatheredConv2d
    model[5].weight.data[:, :100] = 0
    model.to_backend()
    small, plan = compact(model, (1, 28, 28))
    assert all(type(p.data).__module__.startswith("cupy") for p in small.parameters())
    x = cupy_backend.asarray(np.random.default_rng(0).random((8, 1, 28, 28)))
    with no_grad():
        np.testing.assert_allclose(to_numpy(small(Tensor(x)).data),
                                   to_numpy(model(Tensor(x)).data), rtol=0, atol=1e-10)
    assert plan.layer("2").kept_columns is not None
