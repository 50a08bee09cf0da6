import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


@pytest.mark.parametrize("reduce", [ops.sum, ops.mean, ops.max])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                            (-1, True)])
def test_reduction_gradients(reduce, axis, keepdims, rng):
    x = rng.permutation(24).reshape(2, 3, 4) / 7.0  # distinct values: no ties for max
    assert gradcheck(lambda t: reduce(t, axis=axis, keepdims=keepdims), [x])


@pytest.mark.parametrize("reduce, reference", [(ops.sum, np.sum), (ops.mean, np.mean), (ops.max, np.max)])
def test_reduction_values_match_numpy(reduce, reference, rng):
    x = rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(reduce(Tensor(x), axis=(0, 2)).data, reference(x, axis=(0, 2)))
    np.testing.assert_allclose(reduce(Tensor(x), axis=1, keepdims=True).data,
                               reference(x, axis=1, keepdims=True))


def test_max_ties_share_the_gradient_equally():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    ops.max(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_axis_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        ops.sum(Tensor(np.ones((2, 2))), axis=3)


def test_max_backward_keeps_float32():
    x = Tensor(np.array([[1.0, 3.0, 3.0]], np.float32), requires_grad=True)
    ops.max(x, axis=1).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5]])
