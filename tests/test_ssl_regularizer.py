import numpy as np
import pytest

from minissl import Tensor, data, models, ops, optim, ssl
from minissl.nn import Linear
from minissl.ssl import GroupKind, GroupLasso, GroupRule, Mode, SSLConfig


def small_mlp():
    return models.mlp((6, 5, 3), seed=0, dtype=np.float64)


def test_rules_for_gives_one_rule_per_weighted_layer_in_order():
    rules = ssl.rules_for(models.mlp(), GroupKind.NEURON_IN, [1e-3, 2e-3, 3e-3])
    assert [(r.layer, r.strength) for r in rules] == [("0", 1e-3), ("2", 2e-3), ("4", 3e-3)]
    assert len(ssl.rules_for(models.mlp(), GroupKind.NEURON_OUT, 1e-3, layer_type=Linear)) == 3
    with pytest.raises(ValueError, match="2 strengths for 3 layers"):
        ssl.rules_for(models.mlp(), GroupKind.NEURON_IN, [1, 2])


def test_unknown_layer_and_bad_rules_are_clear_errors():
    with pytest.raises(ValueError, match="layer '9', which the model does not have"):
        GroupLasso(small_mlp(), SSLConfig([GroupRule("9", GroupKind.NEURON_IN, 0.1)]))
    with pytest.raises(TypeError, match="GroupKind"):
        SSLConfig([GroupRule("0", "neuron_in", 0.1)])
    with pytest.raises(ValueError, match=">= 0"):
        SSLConfig([GroupRule("0", GroupKind.NEURON_IN, -1.0)])


def test_overlapping_sets_are_applied_in_kind_order():
    rules = [GroupRule("0", GroupKind.NEURON_IN, 0.1), GroupRule("0", GroupKind.NEURON_OUT, 0.1)]
    lasso = GroupLasso(small_mlp(), SSLConfig(rules))
    assert [s.kind for s in lasso.group_sets] == [GroupKind.NEURON_OUT, GroupKind.NEURON_IN]


def test_after_step_uses_lr_times_lambda_and_the_floor():
    model = small_mlp()
    weight = model[0].weight
    weight.data = np.full((5, 6), 0.1)   # every column has norm sqrt(5) * 0.1 = 0.2236
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 1.0)], min_prox_lr=0.3))
    lasso.after_step(lr=0.1)   # eta = max(0.1, 0.3) = 0.3 > 0.2236: every column goes
    assert np.all(weight.data == 0)
    weight.data = np.full((5, 6), 0.1)
    GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 1.0)])).after_step(lr=0.1)
    np.testing.assert_allclose(np.linalg.norm(weight.data, axis=0), np.sqrt(0.05) - 0.1)


def test_subgradient_mode_touches_gradients_not_weights():
    model = small_mlp()
    before = model[0].weight.data.copy()
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.5)], mode=Mode.SUBGRADIENT))
    lasso.after_step(lr=1.0)
    np.testing.assert_array_equal(model[0].weight.data, before)
    lasso.before_step()
    np.testing.assert_allclose(np.linalg.norm(model[0].weight.grad, axis=0), 0.5)


def test_zero_small_groups_and_hold_zeros():
    model = small_mlp()
    weight = model[0].weight
    weight.data[:, 2] = 1e-4
    weight.data[:, 4] = 0.0
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.0)]))
    cut = lasso.zero_small_groups(1e-3)
    assert cut.groups_zeroed == 1 and cut.largest_norm_zeroed == pytest.approx(np.sqrt(5) * 1e-4)
    assert np.all(weight.data[:, [2, 4]] == 0)
    holder = lasso.hold_zeros()
    weight.data += 1.0
    holder.after_step(lr=0.1)
    assert np.all(weight.data[:, [2, 4]] == 0) and np.all(weight.data[:, [0, 1, 3, 5]] != 0)
    assert lasso.zero_group_counts() == [("0", "NEURON_IN", 2, 6)]


@pytest.mark.slow
def test_short_ssl_run_on_the_bundled_sample_removes_whole_neurons():
    sample = data.mnist_sample()
    inputs = data.to_float_images(sample.train_images[:2000])
    labels = sample.train_labels[:2000].astype(np.int64)
    model = models.mlp((784, 64, 10), seed=0)
    lasso = GroupLasso(model, SSLConfig(ssl.rules_for(model, GroupKind.NEURON_IN, [0.2, 0.2])))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for batch_inputs, batch_labels in data.batches(inputs, labels, 100, rng):
            optimizer.zero_grad()
            ops.cross_entropy(model(Tensor(batch_inputs)), batch_labels).backward()
            optimizer.step()
            lasso.after_step(optimizer.lr)
    first_layer = model[0].weight.data
    zero_inputs = np.all(first_layer == 0.0, axis=0).sum()
    zero_hidden = np.all(model[2].weight.data == 0.0, axis=0).sum()
    assert zero_inputs >= 1 and zero_hidden >= 1   # exact zeros, whole columns
    counts = dict(((layer, kind), zero) for layer, kind, zero, _ in lasso.zero_group_counts())
    assert counts[("0", "NEURON_IN")] == zero_inputs


def test_rule_riders_are_resolved_by_name():
    model = small_mlp()
    with pytest.raises(ValueError, match=r"riders \['bn'\]"):
        GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_OUT, 0.1, riders=("bn",))]))


def test_group_size_scaling_multiplies_the_threshold_by_sqrt_group_size():
    model = small_mlp()
    model[0].weight.data = np.full((5, 6), 0.1)   # column norm sqrt(5) * 0.1, |g| = 5
    config = SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.05)], scale_by_size=True)
    GroupLasso(model, config).after_step(lr=1.0)  # threshold 1.0 * 0.05 * sqrt(5)
    np.testing.assert_allclose(np.linalg.norm(model[0].weight.data, axis=0), np.sqrt(5) * (0.1 - 0.05))


def test_rules_for_picks_only_the_layers_a_kind_applies_to():
    """Without layer_type, FILTER must not pick BatchNorm or Linear layers."""
    from minissl import nn

    resnet = models.resnet_cifar(8)
    filters = ssl.rules_for(resnet, GroupKind.FILTER, 0.1)
    assert [rule.layer for rule in filters] == [name for name, module in resnet.named_modules()
                                                 if isinstance(module, nn.Conv2d)]
    ssl.GroupLasso(resnet, ssl.SSLConfig(filters))  # builds: every layer takes FILTER groups
    assert [rule.layer for rule in ssl.rules_for(models.lenet(), GroupKind.NEURON_IN, 0.1)] == \
        ["5", "7"]
    with pytest.raises(ValueError, match="no layer of the model takes SHAPE groups"):
        ssl.rules_for(models.mlp(), GroupKind.SHAPE, 0.1)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -0.1, "0.1", True])
def test_a_strength_that_is_not_a_finite_number_is_refused(strength):
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        GroupRule("0", GroupKind.FILTER, strength)


@pytest.mark.parametrize("strength", [np.float32(0.25), np.float64(0.25), np.int64(0), 1])
def test_a_numpy_or_integer_strength_is_taken_as_a_float(strength):
    rule = GroupRule("0", GroupKind.FILTER, strength)
    assert type(rule.strength) is float and rule.strength == float(strength)


def test_riders_given_as_one_string_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"riders must be a tuple .*riders=\('bn1',\)"):
        GroupRule("0", GroupKind.FILTER, 0.1, riders="bn1")
    assert GroupRule("0", GroupKind.FILTER, 0.1, riders=["bn1"]).riders == ("bn1",)


def test_depth_on_a_single_layer_is_refused():
    model = models.mlp((4, 3, 2))
    with pytest.raises(ValueError, match="DEPTH groups a residual branch.*Linear, one layer"):
        GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.DEPTH, 0.1)]))


def test_a_nan_weight_stops_the_prox_step_with_a_clear_error():
    from minissl.ssl import NonFiniteWeights

    model = models.lenet()
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.FILTER, 0.1)]))
    model[0].weight.data[3, 0, 1, 1] = np.nan
    before = model[0].weight.data.copy()
    with pytest.raises(NonFiniteWeights, match="layer 0: 1 of 20 FILTER groups hold NaN"):
        lasso.after_step(0.1)
    np.testing.assert_array_equal(model[0].weight.data, before)  # nothing half applied
