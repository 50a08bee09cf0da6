import numpy as np
import pytest

from minissl import Tensor, models


def test_mlp_has_the_papers_shape():
    model = models.mlp()
    shapes = [layer.weight.shape for layer in models.linear_layers(model)]
    assert shapes == [(500, 784), (300, 500), (10, 300)]
    assert model(Tensor(np.zeros((2, 784), dtype=np.float32))).shape == (2, 10)


def test_mlp_seed_fixes_the_weights():
    first, second = models.mlp(seed=3).state_dict(), models.mlp(seed=3).state_dict()
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert not np.array_equal(first["0.weight"], models.mlp(seed=4).state_dict()["0.weight"])


def test_mlp_rejects_too_few_sizes():
    with pytest.raises(ValueError, match="at least two"):
        models.mlp((784,))


def test_lenet_is_caffes_lenet():
    model = models.lenet()
    shapes = [layer.weight.shape for layer in models.conv_layers(model)]
    assert shapes == [(20, 1, 5, 5), (50, 20, 5, 5)]
    assert [layer.weight.shape for layer in models.linear_layers(model)] == [(500, 800), (10, 500)]
    assert model(Tensor(np.zeros((3, 1, 28, 28), np.float32))).shape == (3, 10)
    assert model.num_parameters() == 20 * 26 + 50 * 501 + 500 * 801 + 10 * 501


def test_cifar_convnet_is_caffes_cifar10_full_without_lrn():
    model = models.cifar_convnet()
    shapes = [layer.weight.shape for layer in models.conv_layers(model)]
    assert shapes == [(32, 3, 5, 5), (32, 32, 5, 5), (64, 32, 5, 5)]
    assert models.linear_layers(model)[0].weight.shape == (10, 1024)
    assert model(Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 10)


@pytest.mark.parametrize("depth, parameters", [(20, 272_474), (32, 466_906)])
def test_resnet_cifar_depth_and_size(depth, parameters):
    """Parameter counts with projection shortcuts (option B) and BN affine parameters."""
    model = models.resnet_cifar(depth)
    assert len(models.conv_layers(model)) == depth - 1 + 2  # + two projection shortcuts
    assert model.num_parameters() == parameters
    assert model(Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 10)


def test_resnet_cifar_rejects_a_depth_that_is_not_6n_plus_2():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.resnet_cifar(21)
