"""The compacted model computes the sparse model's function, on real MNIST digits, and
its parameter and FLOP counts are exactly what the plan says."""

import json
import zlib

import numpy as np
import pytest

from minissl import Tensor, data, models, nn, no_grad
from minissl.compact import CompactionError, compact, plan_compaction, zero_dropped_weights
from minissl.compact import trace_shapes


@pytest.fixture(scope="module")
def digits():
    """200 real MNIST test digits from the bundled sample, float64 in [0, 1], (200, 784)."""
    sample = data.mnist_sample()
    return data.to_float_images(sample.test_images[:200]).astype(np.float64)


def conv_dense_net(dtype=np.float64):
    """conv -> ReLU -> pool -> conv -> ReLU -> flatten -> dense -> ReLU -> dense."""
    rng = np.random.default_rng(5)
    return nn.Sequential(nn.Conv2d(1, 6, 5, rng=rng, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1, rng=rng, dtype=dtype), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 12 * 12, 30, rng=rng, dtype=dtype), nn.ReLU(),
                         nn.Linear(30, 10, rng=rng, dtype=dtype))


def small_resnet(dtype=np.float64):
    """ResNet-8 on 28x28 digits: stem conv + BN, three BasicBlocks, pooling, dense."""
    rng = np.random.default_rng(6)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                          nn.BatchNorm2d(8, dtype=dtype), nn.ReLU(),
                          nn.BasicBlock(8, 8, rng=rng, dtype=dtype),
                          nn.BasicBlock(8, 16, stride=2, rng=rng, dtype=dtype),
                          nn.BasicBlock(16, 16, rng=rng, dtype=dtype),
                          nn.GlobalAvgPool2d(), nn.Linear(16, 10, rng=rng, dtype=dtype))
    stats = np.random.default_rng(7)
    for _, module in model.named_modules():  # running statistics as after training
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean[:] = stats.normal(0, 0.2, module.channels)
            module.running_var[:] = stats.uniform(0.5, 2.0, module.channels)
            module.weight.data[:] = stats.uniform(0.5, 1.5, module.channels)
            module.bias.data[:] = stats.normal(0, 0.1, module.channels)
    return model.eval()


FAMILIES = {
    "mlp": (lambda dtype=np.float64: models.mlp(dtype=dtype), (784,)),
    "lenet": (lambda dtype=np.float64: models.lenet(dtype=dtype), (1, 28, 28)),
    "conv_dense": (conv_dense_net, (1, 28, 28)),
    "resnet": (small_resnet, (1, 28, 28)),
}


def weight_layers(model):
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))]


def _some(rng, shape, fraction):
    """A random boolean mask with about `fraction` True, never all True."""
    chosen = rng.random(shape) < fraction
    chosen.flat[rng.integers(chosen.size)] = False
    return chosen


def zero_groups(model, kind, rng, fraction=0.4):
    """Zero a random `fraction` of the groups of `kind` in every layer that has them."""
    layers = weight_layers(model)
    for name, layer in layers:
        weight = layer.weight.data
        if kind in ("neuron_out", "filter"):
            if "shortcut" in name or name == layers[-1][0]:
                continue
            chosen = _some(rng, weight.shape[0], fraction)
            weight[chosen] = 0
            if layer.bias is not None:
                layer.bias.data[chosen] = 0
            _zero_riders(model, name, chosen)
        elif kind in ("neuron_in", "channel"):
            weight[:, _some(rng, weight.shape[1], fraction)] = 0
        elif kind == "shape" and weight.ndim == 4:
            weight[:, _some(rng, weight.shape[1:], fraction)] = 0


def _zero_riders(model, name, chosen):
    """A filter group includes the scale and shift of the BatchNorm right after it."""
    modules = dict(model.named_modules())
    prefix, _, index = name.rpartition(".")
    following = f"{prefix}.{int(index) + 1}" if prefix else str(int(index) + 1)
    if isinstance(modules.get(following), nn.BatchNorm2d):
        modules[following].weight.data[chosen] = 0
        modules[following].bias.data[chosen] = 0


def zero_depth(model):
    """Zero every parameter of the first residual branch (one depth group)."""
    block = next(module for module in model if isinstance(module, nn.BasicBlock))
    for parameter in block.branch.parameters():
        parameter.data[...] = 0


def inputs_for(digits, input_shape, dtype):
    return digits.reshape((-1,) + tuple(input_shape)).astype(dtype)


def counted_flops(model, input_shape):
    """FLOPs per sample of a model, counted from its layers (independently of the plan)."""
    total, shapes = 0, trace_shapes(list(model), input_shape)
    for module, before, after in zip(model, shapes[:-1], shapes[1:]):
        if isinstance(module, nn.Sequential):
            total += counted_flops(module, before)
        elif isinstance(module, nn.BasicBlock):
            total += counted_flops(module.branch, before)
            if module.shortcut is not None:
                total += counted_flops(module.shortcut, before)
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.GatheredConv2d)):
            pixels = int(np.prod(after[1:])) if len(after) > 1 else 1
            total += 2 * module.weight.size * pixels
    return total


def assert_same_function(model, small, x, rtol, atol):
    with no_grad():
        expected = model(Tensor(x)).data
        got = small(Tensor(x)).data
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


CASES = [(family, kind) for family in FAMILIES for kind in ("neuron_out", "neuron_in")] + [
    (family, kind) for family in ("lenet", "conv_dense", "resnet")
    for kind in ("filter", "channel", "shape")] + [("resnet", "depth")]


@pytest.mark.parametrize("family, kind", CASES)
def test_compacted_model_equals_sparse_model_on_mnist(family, kind, digits):
    builder, input_shape = FAMILIES[family]
    model = builder().eval()
    rng = np.random.default_rng(zlib.crc32(f"{family} {kind}".encode()))
    zero_depth(model) if kind == "depth" else zero_groups(model, kind, rng)
    small, plan = compact(model, input_shape)
    assert_same_function(model, small, inputs_for(digits, input_shape, np.float64), 0, 1e-10)
    assert small.num_parameters() == plan.params_after < plan.params_before == model.num_parameters()
    assert counted_flops(small, input_shape) == plan.flops_after < plan.flops_before
    assert counted_flops(model, input_shape) == plan.flops_before
    if kind == "depth":
        assert plan.removed_blocks == ["3"]


@pytest.mark.parametrize("family, kind", CASES)
def test_zeroing_the_dropped_weights_changes_no_output_and_no_plan(family, kind, digits):
    """The weights compaction drops, set to zero in the sparse model: its outputs stay the
    same to the bit, it compacts to the same plan, and afterwards every weight outside the
    plan's kept rows and inputs is zero (each counted once in the report)."""
    builder, input_shape = FAMILIES[family]
    model = builder().eval()
    rng = np.random.default_rng(zlib.crc32(f"{family} {kind}".encode()))
    zero_depth(model) if kind == "depth" else zero_groups(model, kind, rng)
    x = inputs_for(digits, input_shape, np.float64)
    with no_grad():
        before = model(Tensor(x)).data
    plan = plan_compaction(model, input_shape)
    nonzero = {name: int(np.count_nonzero(layer.weight.data))
               + (int(np.count_nonzero(layer.bias.data)) if layer.bias is not None else 0)
               for name, layer in weight_layers(model)}
    zeroed = zero_dropped_weights(model, input_shape)
    with no_grad():
        np.testing.assert_array_equal(model(Tensor(x)).data, before)
    assert plan_compaction(model, input_shape).to_dict() == plan.to_dict()
    for name, layer in weight_layers(model):
        kept = plan.layer(name)
        weight = layer.weight.data
        outside = np.ones(weight.shape[:2], dtype=bool)
        outside[np.ix_(kept.kept_out, kept.kept_in)] = False
        assert not np.any(weight[outside])
        now = int(np.count_nonzero(weight)) + (int(np.count_nonzero(layer.bias.data))
                                               if layer.bias is not None else 0)
        assert nonzero[name] - now == zeroed.get(name, 0)


def test_the_columns_on_a_channel_no_filter_produces_are_zeroed():
    """conv1's filter 2 is zero (weights and bias): conv2's 9 columns on channel 2 read only
    zeros, and are the only weights set to zero."""
    model = conv_dense_net()
    conv1, conv2 = model[0], model[3]
    conv1.weight.data[2] = 0
    conv1.bias.data[2] = 0
    assert zero_dropped_weights(model, (1, 28, 28)) == {"3": 8 * 9}
    assert not np.any(conv2.weight.data[:, 2]) and np.all(conv2.weight.data[:, [0, 1, 3, 4, 5]])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_float32_compacted_model_matches_to_1e5_relative(family, digits):
    builder, input_shape = FAMILIES[family]
    model = builder(dtype=np.float32).eval()
    zero_groups(model, "neuron_in", np.random.default_rng(3))
    small, _ = compact(model, input_shape)
    with no_grad():
        expected = model(Tensor(inputs_for(digits, input_shape, np.float32))).data
        got = small(Tensor(inputs_for(digits, input_shape, np.float32))).data
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_mlp_counts_drop_by_exactly_the_zeroed_units():
    model = models.mlp(dtype=np.float64)
    model[0].weight.data[:, :100] = 0           # 100 input pixels unused
    model[0].weight.data[:50] = 0               # 50 hidden units dead (zero rows and biases)
    model[2].weight.data[:, 450:] = 0           # 50 more hidden units unused
    model[2].weight.data[:30] = 0               # 30 second-layer units dead
    small, plan = compact(model)
    assert plan.input_indices == list(range(100, 784))
    assert [layer.weight.shape for layer in models.linear_layers(small)] == [
        (400, 684), (270, 400), (10, 270)]
    assert plan.flops_after == 2 * (684 * 400 + 400 * 270 + 270 * 10)


def test_lenet_paper_structure_compacts_to_the_expected_shapes():
    model = models.lenet(dtype=np.float64)
    model[0].weight.data[3:], model[0].bias.data[3:] = 0, 0       # conv1 keeps 3 filters
    model[2].weight.data[12:], model[2].bias.data[12:] = 0, 0     # conv2 keeps 12 filters
    small, plan = compact(model, (1, 28, 28))
    assert plan.layer("0").shape_after == [3, 1, 5, 5]
    assert plan.layer("2").shape_after == [12, 3, 5, 5]
    assert plan.layer("5").shape_after == [500, 12 * 16]  # 12 kept channels x 4x4 pixels
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    assert_same_function(model, small, x, 0, 1e-10)


def test_model_with_nothing_to_remove_compacts_to_an_equal_copy(digits):
    model = models.lenet(dtype=np.float64)
    small, plan = compact(model, (1, 28, 28))
    assert plan.input_indices is None and plan.params_after == plan.params_before
    for (_, original), (_, copy) in zip(weight_layers(model), weight_layers(small)):
        np.testing.assert_array_equal(copy.weight.data, original.weight.data)
        assert copy.weight.data is not original.weight.data  # a copy, not shared storage
    assert_same_function(model, small, inputs_for(digits, (1, 28, 28), np.float64), 0, 0)


def test_compaction_leaves_the_input_model_unchanged():
    model = models.mlp(dtype=np.float64)
    model[0].weight.data[:, :10] = 0
    before = {key: value.copy() for key, value in model.state_dict().items()}
    compact(model)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_a_layer_with_every_unit_zero_is_a_clear_error():
    model = models.mlp(dtype=np.float64)
    model[2].weight.data[...] = 0
    model[2].bias.data[...] = 0
    with pytest.raises(CompactionError, match=r"layer 2 has no nonzero weight left"):
        compact(model)


def test_conv_models_need_an_input_shape():
    with pytest.raises(CompactionError, match="input_shape is needed"):
        plan_compaction(models.lenet())


def test_plan_is_plain_data_that_round_trips_through_json(tmp_path):
    model = models.lenet(dtype=np.float64)
    model[2].weight.data[:, :, 0, 0] = 0
    plan = plan_compaction(model, (1, 28, 28))
    plan.save_json(tmp_path / "plan.json")
    loaded = json.loads((tmp_path / "plan.json").read_text())
    assert loaded == plan.to_dict()
    assert loaded["layers"][1]["kept_columns"][:3] == [1, 2, 3]
    assert "conv" in str(plan)


def test_compacted_lenet_can_be_fine_tuned(digits):
    """Gradients flow through the gathered convolution and the input Take."""
    model = models.lenet(dtype=np.float64)
    model[2].weight.data[:, :, 0, :] = 0
    small, _ = compact(model, (1, 28, 28))
    from minissl import ops
    loss = ops.cross_entropy(small(Tensor(inputs_for(digits[:8], (1, 28, 28), np.float64))),
                             np.arange(8) % 10)
    loss.backward()
    gathered = small[2]
    assert isinstance(gathered, nn.GatheredConv2d)
    assert gathered.weight.grad.shape == gathered.weight.shape
    assert np.all(np.isfinite(gathered.weight.grad)) and np.any(gathered.weight.grad != 0)


def _test_images():
    """All 10,000 MNIST test images when MINISSL_DATA has them, else the sample's 2,000."""
    try:
        dataset = data.mnist(download=False)
    except data.DataError:
        dataset = data.mnist_sample()
    return data.to_float_images(dataset.test_images)


@pytest.mark.parametrize("family", ["mlp", "lenet"])
def test_float32_compacted_predictions_are_identical_on_every_test_image(family):
    """Bit-for-bit the same predicted classes on the whole test set."""
    builder, input_shape = FAMILIES[family]
    model = builder(dtype=np.float32).eval()
    rng = np.random.default_rng(11)
    zero_groups(model, "neuron_out", rng, fraction=0.6)
    zero_groups(model, "neuron_in", rng, fraction=0.3)
    small, plan = compact(model, input_shape)
    assert plan.flops_after < 0.5 * plan.flops_before
    images = _test_images().reshape((-1,) + input_shape)
    with no_grad():
        for start in range(0, len(images), 2000):
            batch = Tensor(images[start:start + 2000])
            np.testing.assert_array_equal(small(batch).data.argmax(axis=1),
                                          model(batch).data.argmax(axis=1))


@pytest.mark.parametrize("dead", [2, 4])
def test_an_all_zero_later_layer_is_named_as_the_cause(dead):
    """The refusal names the zero layer, not layer 0 that it starved."""
    model = models.mlp((6, 5, 4, 3), seed=0)
    model[dead].weight.data[...] = 0
    model[dead].bias.data[...] = 0
    with pytest.raises(CompactionError, match=f"layer {dead} has no nonzero weight"):
        compact(model)


def test_a_wrong_input_shape_names_the_module_and_the_shapes():
    with pytest.raises(CompactionError,
                       match=r"module 5 \(Linear.*takes 800 inputs, but input_shape \(1, 32, 32\) "
                             r"gives it a sample of shape \(1250,\)"):
        compact(models.lenet(), input_shape=(1, 32, 32))
    with pytest.raises(CompactionError, match=r"module 0 .* takes 1 channels"):
        compact(models.lenet(), input_shape=(28, 28))


def _resnet_with(block_index, *zeroed):
    """small_resnet() with the named parts of one block zeroed ("branch.0", "branch.3",
    "shortcut.0", "middle": every middle channel dead)."""
    model = small_resnet()
    block = model[block_index]
    for part in zeroed:
        if part == "middle":  # BN1 scales and shifts every channel to exactly zero
            block.branch[1].weight.data[...] = 0
            block.branch[1].bias.data[...] = 0
        else:
            owner, position = part.split(".")
            getattr(block, owner)[int(position)].weight.data[...] = 0
    return model


@pytest.mark.parametrize("block_index, zeroed", [
    (3, ["branch.0"]),     # the branch's first conv all zero: the branch adds a constant map
    (4, ["branch.0"]),     # the same in the block with a projection shortcut
    (3, ["branch.3"]),     # the second conv all zero: the branch adds BN2's shift
    (3, ["middle"]),       # every middle channel dead
    (4, ["shortcut.0"]),   # the projection's 1x1 conv all zero: it adds BN's shift
])
def test_a_block_whose_input_still_matters_compacts_to_the_same_function(block_index, zeroed,
                                                                         digits):
    """These were refused ("no nonzero weight is left"), yet the output
    still depends on the input through the block's other path."""
    model = _resnet_with(block_index, *zeroed)
    x = inputs_for(digits, (1, 28, 28), np.float64)
    with no_grad():  # the zeroed part really changed the function, and it still needs x
        assert not np.allclose(model(Tensor(x)).data, small_resnet()(Tensor(x)).data)
        outputs = model(Tensor(x)).data
        assert np.ptp(outputs, axis=0).max() > 1e-3
    small, plan = compact(model, (1, 28, 28))
    assert_same_function(model, small, x, 0, 1e-10)
    assert counted_flops(small, (1, 28, 28)) == plan.flops_after <= plan.flops_before


@pytest.mark.parametrize("zeroed, cause", [
    (["branch.0"], r"layer 4.branch.0 has no nonzero weight left"),
    (["middle"], r"every middle channel of 4.branch is zero or unused"),
])
def test_a_block_that_ignores_its_input_on_both_paths_is_refused_by_name(zeroed, cause):
    model = _resnet_with(4, "shortcut.0", *zeroed)
    with pytest.raises(CompactionError, match=f"block 4: {cause} and its projection shortcut's "
                                              r"layer 4.shortcut.0 has no nonzero weight"):
        compact(model, (1, 28, 28))


def test_a_removed_block_with_a_zero_projection_is_refused():
    model = small_resnet()
    for parameter in model[4].branch.parameters():
        parameter.data[...] = 0
    model[4].shortcut[0].weight.data[...] = 0
    with pytest.raises(CompactionError, match=r"block 4: its branch 4.branch is all zero"):
        compact(model, (1, 28, 28))


def test_one_relu_used_after_several_layers_compacts():
    """Sharing a layer without weights (a common PyTorch habit) is not shared weights."""
    relu = nn.ReLU()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.fc1, self.fc2 = nn.Linear(6, 5, rng=rng), nn.Linear(5, 4, rng=rng)
            self.fc3, self.relu = nn.Linear(4, 3, rng=rng), relu

        def forward(self, x):
            return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    model = Net()
    model.fc1.weight.data[2:4] = 0  # two hidden units of fc1 go
    small, plan = compact(model)  # input_shape read from fc1, the first layer forward calls
    x = Tensor(np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32))
    with no_grad():
        np.testing.assert_allclose(small(x).data, model(x).data, rtol=1e-6, atol=1e-6)
    assert plan.layer("fc2").shape_after == [4, 3]


def test_an_input_shape_read_from_the_wrong_layer_is_not_guessed():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.second, self.first = nn.Linear(5, 3), nn.Linear(6, 5)

        def forward(self, x):
            return self.second(self.first(x))

    with pytest.raises(CompactionError, match="input_shape is needed"):
        compact(Backwards())
    small, _ = compact(Backwards(), input_shape=(6,))
    assert small is not None


def test_a_layer_with_weights_called_twice_is_still_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(CompactionError, match="calls layer fc twice"):
        compact(Twice(), input_shape=(4,))
