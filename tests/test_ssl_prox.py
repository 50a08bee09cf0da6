import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minissl.nn import Linear
from minissl.ssl import GroupKind, layer_groups, prox_group_lasso, shrink_factors

# Zeros, or magnitudes whose squares do not underflow (so the reference norms are exact enough).
finite = st.one_of(st.just(0.0), st.floats(1e-3, 10), st.floats(-10, -1e-3))
weight_matrices = hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=finite)


def dense_layer(weight, bias=None):
    layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=np.float64)
    layer.weight.data = weight.copy()
    if bias is not None:
        layer.bias.data = bias.copy()
    return layer


@settings(max_examples=60, deadline=None)
@given(weight_matrices, st.floats(0, 5))
def test_prox_zeroes_exactly_the_groups_at_or_below_the_threshold(weight, threshold):
    layer = dense_layer(weight)
    norms = np.linalg.norm(weight, axis=0)
    prox_group_lasso(layer_groups(layer, GroupKind.NEURON_IN), threshold)
    after = layer.weight.data
    zero_columns = np.all(after == 0.0, axis=0)
    np.testing.assert_array_equal(zero_columns, norms <= threshold)


@settings(max_examples=60, deadline=None)
@given(weight_matrices, st.floats(0, 5))
def test_surviving_groups_shrink_by_the_threshold_and_keep_their_direction(weight, threshold):
    layer = dense_layer(weight)
    norms = np.linalg.norm(weight, axis=0)
    prox_group_lasso(layer_groups(layer, GroupKind.NEURON_IN), threshold)
    after = layer.weight.data
    alive = norms > threshold
    np.testing.assert_allclose(np.linalg.norm(after[:, alive], axis=0), norms[alive] - threshold,
                               rtol=1e-12, atol=1e-12)
    directions = weight[:, alive] / norms[alive]
    np.testing.assert_allclose(after[:, alive], directions * (norms[alive] - threshold),
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                  elements=st.floats(-10, 10, allow_nan=False, width=64)))
def test_zero_threshold_is_the_identity(weight):
    layer = dense_layer(weight, bias=np.arange(weight.shape[0], dtype=np.float64))
    for kind in (GroupKind.NEURON_IN, GroupKind.NEURON_OUT):
        prox_group_lasso(layer_groups(layer, kind), 0.0)
    np.testing.assert_array_equal(layer.weight.data, weight)


def test_groups_of_one_kind_do_not_interact(rng):
    weight = rng.standard_normal((4, 5))
    whole = dense_layer(weight)
    prox_group_lasso(layer_groups(whole, GroupKind.NEURON_IN), 0.8)
    for column in range(5):
        single = dense_layer(weight[:, [column]])
        prox_group_lasso(layer_groups(single, GroupKind.NEURON_IN), 0.8)
        np.testing.assert_array_equal(single.weight.data[:, 0], whole.weight.data[:, column])


def test_shrink_factors_at_the_kink():
    factors = shrink_factors(np.array([0.0, 1.0, 2.0, 4.0]), 1.0)
    np.testing.assert_array_equal(factors, [0.0, 0.0, 0.5, 0.75])
    np.testing.assert_array_equal(shrink_factors(np.array([0.0, 2.0]), 0.0), [1.0, 1.0])
