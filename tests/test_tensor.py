import sys

import numpy as np
import pytest

from minissl import Tensor, no_grad, ops


def test_shared_subexpression_accumulates_both_paths():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * x          # used twice below
    z = (y + y * 3.0).sum()   # z = 4 x^2
    z.backward()
    np.testing.assert_allclose(x.grad, 8 * x.data)


def test_gradients_accumulate_across_backward_calls():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])


def test_broadcast_gradient_has_the_input_shape():
    bias = Tensor(np.zeros((1, 3)), requires_grad=True)
    x = Tensor(np.ones((4, 3)))
    (x + bias).sum().backward()
    assert bias.grad.shape == (1, 3)
    np.testing.assert_array_equal(bias.grad, [[4.0, 4.0, 4.0]])


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.creator is None and y.parents == ()


def test_constants_receive_no_gradient():
    x, constant = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2))
    (x * constant).sum().backward()
    assert constant.grad is None and x.grad is not None


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(sys.getrecursionlimit() * 3):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_backward_needs_a_scalar_or_an_explicit_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="one-element"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 4.0])


def test_backward_on_a_constant_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(1)).backward()


def test_dtype_rules():
    assert Tensor([1, 2, 3]).dtype == np.float32
    assert Tensor(np.arange(3), dtype=np.float32).dtype == np.float32
    assert Tensor(np.ones(2, dtype=np.float64)).dtype == np.float64
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    x64 = Tensor(np.ones(2), requires_grad=True)
    assert ops.relu(x64 * 2.0).dtype == np.float64


def test_tensor_of_tensor_is_rejected():
    with pytest.raises(TypeError, match="detach"):
        Tensor(Tensor(np.ones(2)))


def test_leaves_own_their_gradients():
    """x + y hands one gradient array to both leaves; each leaf must get its own."""
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (x + y).sum().backward()
    assert x.grad is not y.grad
    x.grad *= 5  # an in-place update of one gradient (as an optimizer might do)
    np.testing.assert_array_equal(y.grad, np.ones(3))


@pytest.mark.parametrize("data, message", [
    ([None, 1], "must be numeric .* None"),
    (np.array([1 + 2j]), "must be numeric"),
    (np.ones(2, np.float16), "float32 or float64, got float16"),
])
def test_tensor_refuses_what_it_would_silently_convert(data, message):
    """One dtype rule; nothing silently becomes a NaN or another float."""
    with pytest.raises(TypeError, match=message):
        Tensor(data)


def test_python_numbers_become_float32_and_floats_keep_their_dtype():
    assert Tensor([1, 2]).dtype == np.float32 and Tensor(3).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64
    assert Tensor(np.array([True]), dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_])
def test_integer_arrays_are_refused_unless_a_dtype_says_how(dtype):
    """uint8 pixels straight into a float32 model were computed on 0..255, unscaled."""
    images = np.full((2, 1, 28, 28), 200).astype(dtype)
    with pytest.raises(TypeError, match="scale integer images first .*to_float_images"):
        Tensor(images)
    from minissl import models
    with pytest.raises(TypeError, match="scale integer images first"):
        models.lenet()(Tensor(images))


def test_linear_refuses_a_mixed_dtype_like_conv2d():
    from minissl.nn import Linear

    with pytest.raises(TypeError, match="x is float64 but weight is float32"):
        Linear(2, 3)(Tensor(np.ones((1, 2))))
