import numpy as np
import pytest

from minissl import Function, GradcheckError, gradcheck


class WrongGradient(Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, grad_out):
        return (grad_out,)  # wrong: should be 2 x grad_out


def test_gradcheck_catches_a_wrong_backward(rng):
    with pytest.raises(GradcheckError, match="input 0 element"):
        gradcheck(WrongGradient.apply, [rng.uniform(1, 2, size=(3,))])


def test_gradcheck_does_not_modify_the_callers_arrays(rng):
    x = rng.standard_normal((2, 2))
    before = x.copy()
    gradcheck(lambda t: t * t, [x])
    np.testing.assert_array_equal(x, before)
