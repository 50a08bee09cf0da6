import numpy as np
import pytest

from minissl.nn import Conv2d, Linear, Module, Parameter
from minissl.ssl import GroupKind, block_groups, layer_groups


class FakeConv(Module):
    """A conv-shaped layer (weight (N, C, M, K), bias (N,)) for group tests; like any layer, it
    declares which weight axes index its SSL groups (minissl/nn/protocol.py)."""

    ssl_group_axes = Conv2d.ssl_group_axes

    def __init__(self, shape):
        super().__init__()
        self.weight = Parameter(np.arange(1, np.prod(shape) + 1, dtype=np.float64).reshape(shape))
        self.bias = Parameter(np.arange(1, shape[0] + 1, dtype=np.float64) * 1000)


def dense():
    layer = Linear(3, 2, dtype=np.float64)
    layer.weight.data = np.arange(1, 7, dtype=np.float64).reshape(2, 3)  # (out=2, in=3)
    layer.bias.data = np.array([10.0, 20.0])
    return layer


def zero_one_group(group_set, index):
    """Scale group `index` (a tuple into group_shape) by 0 and everything else by 1."""
    factors = np.ones(group_set.group_shape)
    factors[index] = 0.0
    group_set.scale(factors)


def test_neuron_in_groups_are_columns():
    layer = dense()
    groups = layer_groups(layer, GroupKind.NEURON_IN)
    np.testing.assert_allclose(groups.norms(), np.linalg.norm(layer.weight.data, axis=0))
    zero_one_group(groups, (1,))
    np.testing.assert_array_equal(layer.weight.data, [[1, 0, 3], [4, 0, 6]])
    np.testing.assert_array_equal(layer.bias.data, [10, 20])  # the bias is not in a column group


def test_neuron_out_groups_are_rows_with_their_bias():
    layer = dense()
    groups = layer_groups(layer, GroupKind.NEURON_OUT)
    np.testing.assert_allclose(groups.norms(), np.sqrt([1 + 4 + 9 + 100, 16 + 25 + 36 + 400]))
    assert groups.group_size() == 4
    zero_one_group(groups, (0,))
    np.testing.assert_array_equal(layer.weight.data, [[0, 0, 0], [4, 5, 6]])
    np.testing.assert_array_equal(layer.bias.data, [0, 20])


@pytest.mark.parametrize("kind, index, zeroed", [
    (GroupKind.FILTER, (1,), lambda w: w[1]),
    (GroupKind.CHANNEL, (2,), lambda w: w[:, 2]),
    (GroupKind.SHAPE, (0, 1, 0), lambda w: w[:, 0, 1, 0]),
])
def test_conv_groups_cover_exactly_their_weights(kind, index, zeroed):
    layer = FakeConv((2, 3, 2, 2))
    before = layer.weight.data.copy()
    groups = layer_groups(layer, kind)
    expected_norm = np.sqrt((zeroed(before) ** 2).sum() + (1000.0 * 2) ** 2 * (kind is GroupKind.FILTER))
    np.testing.assert_allclose(groups.norms()[index], expected_norm)
    zero_one_group(groups, index)
    assert np.all(zeroed(layer.weight.data) == 0)
    assert np.count_nonzero(layer.weight.data == 0) == zeroed(before).size
    assert (layer.bias.data[1] == 0) == (kind is GroupKind.FILTER)


def test_conv_group_shapes():
    layer = FakeConv((4, 3, 5, 5))
    assert layer_groups(layer, GroupKind.FILTER).group_shape == (4,)
    assert layer_groups(layer, GroupKind.CHANNEL).group_shape == (3,)
    assert layer_groups(layer, GroupKind.SHAPE).group_shape == (3, 5, 5)
    assert layer_groups(layer, GroupKind.SHAPE).group_size() == 4


def test_depth_group_is_every_parameter_of_the_block():
    block = Module()
    block.first, block.second = dense(), FakeConv((2, 1, 1, 1))
    groups = block_groups(block)
    total = sum((p.data ** 2).sum() for p in block.parameters())
    np.testing.assert_allclose(groups.norms(), np.sqrt(total))
    groups.scale(np.array(0.0))
    assert all(np.all(p.data == 0) for p in block.parameters())


def test_kind_that_does_not_fit_the_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="FILTER does not apply to layer fc.*2-D weight"):
        layer_groups(dense(), GroupKind.FILTER, "fc")


class FakeBatchNorm(Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = Parameter(np.full(channels, 3.0))
        self.bias = Parameter(np.full(channels, 4.0))


def test_batchnorm_scale_and_shift_ride_with_their_filter():
    layer, norm = FakeConv((2, 1, 1, 1)), FakeBatchNorm(2)
    groups = layer_groups(layer, GroupKind.FILTER, "conv", riders=[norm])
    np.testing.assert_allclose(groups.norms(), np.sqrt([1 + 1000**2 + 9 + 16, 4 + 2000**2 + 9 + 16]))
    zero_one_group(groups, (0,))
    assert layer.weight.data[0].sum() == 0 and layer.bias.data[0] == 0
    np.testing.assert_array_equal(norm.weight.data, [0.0, 3.0])
    np.testing.assert_array_equal(norm.bias.data, [0.0, 4.0])


def test_riders_must_fit_and_only_join_output_groups():
    with pytest.raises(ValueError, match=r"must be \(2,\)"):
        layer_groups(FakeConv((2, 1, 1, 1)), GroupKind.FILTER, "conv", riders=[FakeBatchNorm(3)])
    with pytest.raises(ValueError, match="riders join only"):
        layer_groups(FakeConv((2, 1, 1, 1)), GroupKind.CHANNEL, "conv", riders=[FakeBatchNorm(2)])


def test_a_depth_rule_on_a_block_or_its_branch_takes_only_the_branch():
    """The projection shortcut never joins the depth group."""
    from minissl import models, nn
    from minissl.ssl import GroupKind, GroupLasso, GroupRule, SSLConfig

    model = models.resnet_cifar(8)
    name = next(str(i) for i, m in enumerate(model)
                if isinstance(m, nn.BasicBlock) and m.shortcut is not None)
    by_block, by_branch = (GroupLasso(model, SSLConfig([GroupRule(layer, GroupKind.DEPTH, 0.1)]))
                           for layer in (name, f"{name}.branch"))
    members = [{id(m.parameter) for m in lasso.group_sets[0].members}
               for lasso in (by_block, by_branch)]
    assert members[0] == members[1] == {id(p) for p in model[int(name)].branch.parameters()}
    assert not members[0] & {id(p) for p in model[int(name)].shortcut.parameters()}
