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
