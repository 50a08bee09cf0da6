import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)),
                                              ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul_gradients(shape_a, shape_b, rng):
    assert gradcheck(ops.matmul, [rng.standard_normal(shape_a), rng.standard_normal(shape_b)])


def test_linear_gradients_with_and_without_bias(rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    assert gradcheck(ops.linear, [x, w, b])
    assert gradcheck(ops.linear, [x, w])


def test_linear_equals_x_times_w_transpose_plus_b(rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    np.testing.assert_allclose(ops.linear(Tensor(x), Tensor(w), Tensor(b)).data, x @ w.T + b)


def test_matmul_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        ops.matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))


def test_linear_rejects_bad_bias():
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3))), Tensor(np.ones(3)))
