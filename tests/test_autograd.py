import numpy as np

from minissl import Function, Tensor, is_grad_enabled, no_grad
from minissl.autograd import unbroadcast


def test_unbroadcast_sums_added_and_stretched_axes():
    grad = np.ones((2, 3, 4))
    np.testing.assert_array_equal(unbroadcast(grad, (4,)), np.full(4, 6.0))
    np.testing.assert_array_equal(unbroadcast(grad, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(unbroadcast(grad, ()), 24.0)
    assert unbroadcast(grad, (2, 3, 4)) is grad


def test_no_grad_restores_the_previous_mode_after_an_exception():
    try:
        with no_grad():
            assert not is_grad_enabled()
            raise KeyError
    except KeyError:
        pass
    assert is_grad_enabled()


class Square(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return x * x

    @staticmethod
    def backward(ctx, grad_out):
        return (2 * ctx.x * grad_out,)


def test_a_user_defined_function_joins_the_graph():
    x = Tensor(np.array([3.0]), requires_grad=True)
    y = Square.apply(x)
    assert y.creator is Square and y.parents == (x,)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0])
