import numpy as np
import pytest
import scipy.signal

from minissl import Tensor, gradcheck, ops


@pytest.mark.parametrize("stride, padding, kernel", [(1, 0, (3, 3)), (2, 1, (3, 2)), (3, 2, (2, 3))])
def test_conv2d_gradients(cpu_backend, stride, padding, kernel, rng):
    x = rng.standard_normal((2, 3, 6, 7))
    weight = rng.standard_normal((4, 3) + kernel)
    bias = rng.standard_normal(4)
    conv = lambda x, w, b: ops.conv2d(x, w, b, stride=stride, padding=padding)  # noqa: E731
    assert gradcheck(conv, [x, weight, bias])


def test_conv2d_without_bias_gradients(cpu_backend, rng):
    x, weight = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 2, 2))
    assert gradcheck(lambda x, w: ops.conv2d(x, w, padding=1), [x, weight])


def test_conv2d_equals_scipy_correlate_plus_bias(cpu_backend, rng):
    x, weight, bias = rng.standard_normal((2, 3, 8, 9)), rng.standard_normal((5, 3, 3, 4)), rng.standard_normal(5)
    out = ops.conv2d(Tensor(x), Tensor(weight), Tensor(bias)).data
    for b in range(2):
        for n in range(5):
            expected = scipy.signal.correlate(x[b], weight[n], mode="valid")[0] + bias[n]
            np.testing.assert_allclose(out[b, n], expected, rtol=1e-10, atol=1e-10)


def test_conv2d_stride_and_padding_equal_scipy_on_the_padded_input_subsampled(cpu_backend, rng):
    x, weight = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    out = ops.conv2d(Tensor(x), Tensor(weight), stride=2, padding=1).data
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    for n in range(3):
        expected = scipy.signal.correlate(padded, weight[n], mode="valid")[0][::2, ::2]
        np.testing.assert_allclose(out[0, n], expected, rtol=1e-10, atol=1e-10)


def test_conv2d_keeps_float32(rng):
    x = Tensor(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))
    weight = Tensor(rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    assert ops.conv2d(x, weight).dtype == np.float32


@pytest.mark.parametrize("x_shape, w_shape, message", [
    ((1, 2, 5, 5), (3, 4, 3, 3), "input has 2 channels"),
    ((2, 5, 5), (3, 2, 3, 3), r"expects x \(B, C_in, H, W\)"),
    ((1, 1, 2, 2), (1, 1, 3, 3), "larger than the padded input"),
])
def test_conv2d_rejects_bad_shapes_with_clear_errors(x_shape, w_shape, message):
    with pytest.raises(ValueError, match=message):
        ops.conv2d(Tensor(np.ones(x_shape)), Tensor(np.ones(w_shape)))


def test_conv2d_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match="float32 but weight is float64"):
        ops.conv2d(Tensor(np.ones((1, 1, 3, 3), np.float32)), Tensor(np.ones((1, 1, 2, 2))))


def test_conv2d_gathered_gradients(cpu_backend, rng):
    x, weight2, bias = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    rows = np.array([0, 2, 3, 5, 8, 11, 17])
    conv = lambda x, w, b: ops.conv2d_gathered(x, w, rows, (3, 3), b, stride=2, padding=1)  # noqa: E731
    assert gradcheck(conv, [x, weight2, bias])


def test_conv2d_gathered_equals_conv2d_with_zero_columns(cpu_backend, rng):
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    rows = np.array([1, 4, 5, 9, 13, 20, 26])
    sparse = np.zeros_like(weight.reshape(4, -1))
    sparse[:, rows] = weight.reshape(4, -1)[:, rows]
    dense = ops.conv2d(Tensor(x), Tensor(sparse.reshape(weight.shape)), padding=1).data
    gathered = ops.conv2d_gathered(Tensor(x), Tensor(sparse[:, rows]), rows, (3, 3), padding=1).data
    np.testing.assert_allclose(gathered, dense, rtol=1e-12, atol=1e-12)


def test_take_gradients_and_errors(rng):
    assert gradcheck(lambda t: ops.take(t, [3, 0, 2]), [rng.standard_normal((2, 4, 3))])
    with pytest.raises(ValueError, match="unique"):
        ops.take(Tensor(np.ones((2, 4))), [1, 1])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ops.take(Tensor(np.ones((2, 4))), [4])
