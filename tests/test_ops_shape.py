import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


def test_reshape_gradient(rng):
    assert gradcheck(lambda x: ops.reshape(x, (4, -1)), [rng.standard_normal((2, 3, 4))])


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1)])
def test_transpose_gradient(axes, rng):
    assert gradcheck(lambda x: ops.transpose(x, axes), [rng.standard_normal((2, 3, 4))])


def test_tensor_methods_match_numpy(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(Tensor(x).reshape(6, 4).data, x.reshape(6, 4))
    np.testing.assert_array_equal(Tensor(x).transpose(2, 0, 1).data, x.transpose(2, 0, 1))
    np.testing.assert_array_equal(Tensor(x[0]).T.data, x[0].T)


def test_bad_reshape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) to \(4, 2\)"):
        ops.reshape(Tensor(np.ones((2, 3))), (4, 2))


def test_bad_transpose_axes_are_rejected():
    with pytest.raises(ValueError, match="not a permutation"):
        ops.transpose(Tensor(np.ones((2, 3))), (0, 0))
