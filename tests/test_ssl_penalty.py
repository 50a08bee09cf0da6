import numpy as np
import pytest

from minissl.finite_differences import numerical_gradient
from minissl.nn import Linear
from minissl.ssl import (GroupKind, add_subgradient, dense_chain_neurons, group_lasso_value, layer_groups,
                         weight_sparsity)


def test_group_lasso_value_is_the_weighted_sum_of_group_norms(rng):
    layer = Linear(4, 3, dtype=np.float64, rng=rng)
    columns, rows = layer_groups(layer, GroupKind.NEURON_IN), layer_groups(layer, GroupKind.NEURON_OUT)
    w, b = layer.weight.data, layer.bias.data = rng.standard_normal((3, 4)), rng.standard_normal(3)
    expected = 0.5 * np.linalg.norm(w, axis=0).sum() + 0.25 * np.sqrt((w**2).sum(1) + b**2).sum()
    np.testing.assert_allclose(group_lasso_value([columns, rows], [0.5, 0.25]), expected)
    scaled = 0.5 * np.sqrt(3) * np.linalg.norm(w, axis=0).sum()
    np.testing.assert_allclose(group_lasso_value([columns], [0.5], scale_by_size=True), scaled)


@pytest.mark.parametrize("kind", [GroupKind.NEURON_IN, GroupKind.NEURON_OUT])
def test_subgradient_equals_the_finite_difference_gradient_of_the_penalty(kind, rng):
    layer = Linear(4, 3, dtype=np.float64, rng=rng)
    layer.bias.data = rng.standard_normal(3)
    groups = layer_groups(layer, kind)
    add_subgradient(groups, 0.7)
    numeric = numerical_gradient(lambda: group_lasso_value([groups], [0.7]), layer.weight.data, 1e-6)
    np.testing.assert_allclose(layer.weight.grad, numeric, rtol=1e-6, atol=1e-9)


def test_subgradient_of_a_zero_group_is_zero():
    layer = Linear(2, 2, dtype=np.float64)
    layer.weight.data = np.array([[0.0, 3.0], [0.0, 4.0]])
    add_subgradient(layer_groups(layer, GroupKind.NEURON_IN), 1.0)
    np.testing.assert_allclose(layer.weight.grad, [[0.0, 0.6], [0.0, 0.8]])


def test_weight_sparsity_of_a_hand_built_conv_weight():
    weight = np.zeros((4, 3, 2, 2))
    weight[0, 0, 0, 0] = 1.0   # filter 0, channel 0, fiber (0, 0, 0)
    weight[2, 0, 1, 1] = 2.0   # filter 2, channel 0, fiber (0, 1, 1)
    weight[2, 2, 0, 1] = 3.0   # filter 2, channel 2, fiber (2, 0, 1)
    report = weight_sparsity(weight, "conv")
    assert (report.rows, report.nonzero_rows) == (4, 2)
    assert (report.columns, report.nonzero_columns) == (12, 3)
    assert (report.channels, report.nonzero_channels) == (3, 2)
    assert report.row_sparsity == 0.5 and report.column_sparsity == 0.75


def test_dense_chain_neurons_counts_units_by_their_outgoing_column():
    first = np.ones((3, 4))
    first[:, 1] = 0            # input unit 1 removed
    second = np.ones((2, 3))
    second[:, [0, 2]] = 0      # hidden units 0 and 2 removed
    assert dense_chain_neurons([first, second]) == [3, 1, 2]


def test_dense_chain_neurons_rejects_layers_that_do_not_chain():
    with pytest.raises(ValueError, match="layer 1 takes 5 inputs but layer 0 gives 3"):
        dense_chain_neurons([np.ones((3, 4)), np.ones((2, 5))])
