import numpy as np
import pytest

from minissl import Tensor, gradcheck, gradcheck_module
from minissl.nn import Flatten, Linear, ReLU, Sequential


def test_linear_gradient_for_input_weight_and_bias(rng):
    assert gradcheck_module(Linear(4, 3, dtype=np.float64, rng=rng), [rng.standard_normal((5, 4))])


def test_linear_without_bias_gradient(rng):
    assert gradcheck_module(Linear(4, 3, bias=False, dtype=np.float64, rng=rng),
                            [rng.standard_normal((2, 4))])


def test_sequential_mlp_gradient_for_input_and_every_parameter(rng):
    model = Sequential(Linear(4, 5, dtype=np.float64, rng=rng), ReLU(),
                       Linear(5, 3, dtype=np.float64, rng=rng))
    assert gradcheck_module(model, [rng.standard_normal((3, 4))])


def test_gradcheck_module_insists_on_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck_module(Linear(2, 2), [np.ones((1, 2))])


def test_flatten_keeps_the_batch_axis(rng):
    x = rng.standard_normal((2, 3, 4))
    assert Flatten()(Tensor(x)).shape == (2, 12)
    assert gradcheck(Flatten(), [x])


def test_linear_input_shape_error_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(4, 3\) expects input \(B, 4\), got \(2, 5\)"):
        Linear(4, 3)(Tensor(np.ones((2, 5))))


def test_seeded_layers_are_reproducible():
    first = Linear(8, 4, rng=np.random.default_rng(7))
    second = Linear(8, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first.weight.data, second.weight.data)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="positive sizes"):
        Linear(0, 3)
    with pytest.raises(ValueError, match="unknown init"):
        Linear(2, 3, init="uniform")
    with pytest.raises(TypeError, match="not a Module"):
        Sequential(Linear(2, 2), lambda x: x)
