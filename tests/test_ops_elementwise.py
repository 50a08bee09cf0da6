import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


def away_from_zero(rng, shape, margin=0.2):
    """Random values with |x| >= margin, so kinks and poles are not straddled by eps."""
    values = rng.uniform(margin, 2.0, size=shape)
    return values * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div])
@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                              ((), (2, 3))])
def test_binary_op_gradients_with_broadcasting(op, shape_a, shape_b, rng):
    a, b = away_from_zero(rng, shape_a), away_from_zero(rng, shape_b)
    assert gradcheck(op, [a, b])


@pytest.mark.parametrize("op", [ops.neg, ops.exp, ops.relu])
def test_unary_op_gradients(op, rng):
    assert gradcheck(op, [away_from_zero(rng, (3, 5))])


def test_log_gradient(rng):
    assert gradcheck(ops.log, [rng.uniform(0.3, 3.0, size=(4, 3))])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5])
def test_pow_gradient(exponent, rng):
    assert gradcheck(lambda x: ops.pow(x, exponent), [rng.uniform(0.3, 2.0, size=(3, 4))])


def test_relu_gradient_at_zero_is_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    ops.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_forward_values_match_numpy(rng):
    a, b = rng.standard_normal((3, 4)), rng.uniform(0.5, 1.0, (4,))
    np.testing.assert_allclose((Tensor(a) / Tensor(b)).data, a / b)
    np.testing.assert_allclose((Tensor(a) ** 2).data, a**2)
    np.testing.assert_allclose(ops.relu(Tensor(a)).data, np.maximum(a, 0))


def test_python_scalars_keep_the_tensor_dtype():
    x = Tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.5 + 1).dtype == np.float32
    assert (1 - x).dtype == np.float32
    assert (2.0 / x).dtype == np.float32


def test_pow_rejects_tensor_exponent():
    with pytest.raises(TypeError, match="exponent"):
        ops.pow(Tensor(np.ones(2)), Tensor(np.ones(2)))


def test_relu_of_minus_infinity_is_zero_and_nan_stays_nan():
    x = Tensor(np.array([-np.inf, np.inf, np.nan, -1.0, 0.0, 2.0], np.float32), requires_grad=True)
    out = ops.relu(x)
    np.testing.assert_array_equal(out.data, [0, np.inf, np.nan, 0, 0, 2])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 0, 0, 0, 1])  # kink at 0: gradient 0


def test_pow_zero_has_zero_gradient_even_at_zero():
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
