import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


def _distinct(rng, shape):
    """Values with no ties, so the max-pool gradient is well defined everywhere."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)


@pytest.mark.parametrize("kernel, stride, ceil_mode", [(2, 2, False), (3, 2, True), (3, 1, False)])
def test_max_pool2d_gradients(cpu_backend, kernel, stride, ceil_mode, rng):
    x = _distinct(rng, (2, 2, 7, 6))
    assert gradcheck(lambda t: ops.max_pool2d(t, kernel, stride, ceil_mode), [x])


@pytest.mark.parametrize("kernel, stride, ceil_mode", [(2, 2, False), (3, 2, True), (3, 1, False)])
def test_avg_pool2d_gradients(cpu_backend, kernel, stride, ceil_mode, rng):
    x = rng.standard_normal((2, 2, 7, 6))
    assert gradcheck(lambda t: ops.avg_pool2d(t, kernel, stride, ceil_mode), [x])


def test_global_avg_pool2d_gradients_and_value(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    assert gradcheck(ops.global_avg_pool2d, [x])
    np.testing.assert_allclose(ops.global_avg_pool2d(Tensor(x)).data, x.mean(axis=(2, 3)))


def test_max_pool_tie_sends_the_gradient_to_the_first_maximum(cpu_backend):
    x = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    ops.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 0], [0, 0]])


def test_ceil_mode_average_divides_by_the_inside_area(cpu_backend):
    """Caffe's ceil mode: a 3x3 window at the border of a 4x4 image covers 2x2 pixels."""
    x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    out = ops.avg_pool2d(x, 3, 2, ceil_mode=True).data
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 1, 1] == pytest.approx(np.mean([10, 11, 14, 15]))


def test_pool_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"expects input \(B, C, H, W\)"):
        ops.max_pool2d(Tensor(np.ones((3, 4))), 2)
