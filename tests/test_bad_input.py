"""Bad input across the public API: each is refused with an error naming the problem (a pass
over the public functions for wrong dtypes, NaN and infinity, wrong kinds of argument and
empty arrays), never a deep traceback or a silent wrong result."""

import numpy as np
import pytest

from minissl import compact, models, nn, optim, ssl, train
from minissl.ssl import GroupKind, GroupRule


@pytest.mark.parametrize("options, message", [
    ({"lr": float("nan")}, "finite and >= 0"), ({"lr": float("inf")}, "finite and >= 0"),
    ({"lr": 0.1, "momentum": float("nan")}, "finite and >= 0"),
    ({"lr": 0.1, "weight_decay": -1}, "finite and >= 0"),
])
def test_sgd_refuses_numbers_that_are_not_finite(options, message):
    with pytest.raises(ValueError, match=message):
        optim.SGD(models.mlp((4, 3, 2)).parameters(), **options)


def test_ssl_config_refuses_a_bad_floor_and_rules_that_are_not_rules():
    rule = GroupRule("0", GroupKind.NEURON_IN, 0.1)
    for floor in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="min_prox_lr must be finite and >= 0"):
            ssl.SSLConfig([rule], min_prox_lr=floor)
    with pytest.raises(TypeError, match="rules must be GroupRules, got '0'"):
        ssl.SSLConfig(["0"])


@pytest.mark.parametrize("threshold", [float("nan"), -1.0, float("inf")])
def test_the_cut_refuses_a_threshold_that_is_not_a_finite_number(threshold):
    model = models.mlp((4, 3, 2))
    lasso = ssl.GroupLasso(model, ssl.SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.1)]))
    with pytest.raises(ValueError, match="threshold must be finite and >= 0"):
        lasso.zero_small_groups(threshold)


def test_layers_refuse_impossible_settings():
    with pytest.raises(ValueError, match="positive ints, got 0"):
        nn.MaxPool2d(0)
    with pytest.raises(ValueError, match="positive ints"):
        nn.AvgPool2d(2, stride=0)
    with pytest.raises(ValueError, match="eps > 0"):
        nn.BatchNorm2d(3, eps=-1)
    with pytest.raises(ValueError, match="momentum in \\[0, 1\\]"):
        nn.BatchNorm2d(3, momentum=float("nan"))


def test_evaluation_refuses_mismatched_or_empty_sets_and_predicts_nothing_for_nothing():
    model = models.mlp((4, 3, 2))
    inputs = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="3 inputs and 2 labels"):
        train.error_rate(model, inputs, np.zeros(2, np.int64))
    assert train.predict(model, inputs[:0]).shape == (0,)
    with pytest.raises(ValueError, match="training set needs as many labels as inputs"):
        train.Trainer((inputs, np.zeros(2, np.int64), inputs, np.zeros(3, np.int64)))


def test_compact_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="compact needs a minissl.nn Module, got str"):
        compact.compact("lenet")
