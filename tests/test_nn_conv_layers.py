import numpy as np
import pytest

from minissl import Tensor, gradcheck_module, nn


def test_conv2d_layer_gradients_float64(rng):
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64)
    layer.bias.data[:] = rng.standard_normal(3)
    assert gradcheck_module(layer, [rng.standard_normal((2, 2, 5, 5))])


def test_conv2d_layer_shapes_and_repr():
    layer = nn.Conv2d(3, 8, (5, 3), padding=2)
    assert layer.weight.shape == (8, 3, 5, 3) and layer.bias.shape == (8,)
    assert layer(Tensor(np.zeros((2, 3, 10, 10), np.float32))).shape == (2, 8, 10, 12)
    assert "Conv2d(3, 8" in repr(layer)


def test_conv2d_layer_names_the_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expects input \(B, 3, H, W\)"):
        nn.Conv2d(3, 4, 3)(Tensor(np.zeros((1, 2, 5, 5), np.float32)))


def test_conv2d_layer_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive sizes"):
        nn.Conv2d(3, 0, 3)


def test_batchnorm2d_switches_between_batch_and_running_statistics(rng):
    layer = nn.BatchNorm2d(2, dtype=np.float64)
    x = Tensor(rng.standard_normal((4, 2, 3, 3)) * 2 + 3)
    train_out = layer(x).data
    np.testing.assert_allclose(train_out.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    assert np.all(layer.running_mean != 0)
    layer.eval()
    before = layer.running_mean.copy()
    eval_out = layer(x).data
    np.testing.assert_array_equal(layer.running_mean, before)
    assert not np.allclose(eval_out, train_out)


def test_batchnorm2d_buffers_are_in_the_state_dict():
    state = nn.BatchNorm2d(3).state_dict()
    assert set(state) == {"weight", "bias", "running_mean", "running_var"}


def test_pool_layers_and_dropout_shapes():
    x = Tensor(np.zeros((2, 3, 32, 32), np.float32))
    assert nn.MaxPool2d(3, 2, ceil_mode=True)(x).shape == (2, 3, 16, 16)
    assert nn.AvgPool2d(2)(x).shape == (2, 3, 16, 16)
    assert nn.GlobalAvgPool2d()(x).shape == (2, 3)
    dropout = nn.Dropout(0.5, seed=1)
    assert dropout(x).shape == x.shape
    assert dropout.eval()(x) is x


def test_dropout_layer_with_the_same_seed_draws_the_same_masks():
    x = Tensor(np.ones((4, 8), np.float32))
    first, second = nn.Dropout(0.5, seed=3), nn.Dropout(0.5, seed=3)
    np.testing.assert_array_equal(first(x).data, second(x).data)
    np.testing.assert_array_equal(first(x).data, second(x).data)


def test_basic_block_gradients_with_projection_shortcut(rng):
    block = nn.BasicBlock(2, 3, stride=2, rng=rng, dtype=np.float64)
    assert block.shortcut is not None
    assert gradcheck_module(block, [rng.standard_normal((2, 2, 4, 4))])


def test_basic_block_gradients_with_identity_shortcut(rng):
    block = nn.BasicBlock(2, 2, rng=rng, dtype=np.float64)
    assert block.shortcut is None
    assert gradcheck_module(block, [rng.standard_normal((2, 2, 3, 3))])


def test_basic_block_with_zero_branch_is_relu_of_the_shortcut(rng):
    """The depth group's promise: an all-zero branch leaves relu(x)."""
    block = nn.BasicBlock(2, 2, rng=rng, dtype=np.float64)
    for parameter in block.branch.parameters():
        parameter.data[...] = 0
    x = rng.standard_normal((2, 2, 4, 4))
    np.testing.assert_array_equal(block(Tensor(x)).data, np.maximum(x, 0))


def test_take_layer_validates_once_and_names_a_short_input():
    with pytest.raises(ValueError, match="unique"):
        nn.Take([1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        nn.Take([-1, 2])
    with pytest.raises(ValueError, match="at least 4 entries on axis 1"):
        nn.Take([0, 3])(Tensor(np.zeros((2, 3), np.float32)))
    np.testing.assert_array_equal(nn.Take([2, 0])(Tensor(np.arange(6.0).reshape(2, 3))).data,
                                  [[2, 0], [5, 3]])
