import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


def test_dropout_gradients_use_the_same_mask(rng):
    x = rng.standard_normal((4, 5))
    assert gradcheck(lambda t: ops.dropout(t, 0.3, np.random.default_rng(7)), [x])


def test_dropout_zeroes_about_p_and_scales_the_rest():
    x = Tensor(np.ones((200, 100)))
    out = ops.dropout(x, 0.25, np.random.default_rng(0)).data
    assert abs((out == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.75)


def test_dropout_same_seed_same_mask_and_identity_in_eval():
    x = Tensor(np.ones((10, 10)))
    first = ops.dropout(x, 0.5, np.random.default_rng(3)).data
    second = ops.dropout(x, 0.5, np.random.default_rng(3)).data
    np.testing.assert_array_equal(first, second)
    assert ops.dropout(x, 0.5, np.random.default_rng(3), training=False) is x


def test_dropout_rejects_probability_one():
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        ops.dropout(Tensor(np.ones(3)), 1.0, np.random.default_rng(0))
