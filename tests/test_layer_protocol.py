"""The layer protocol (minissl/nn/protocol.py): compaction, SSL groups and timing ask each
layer what it is, follow any Module whose forward is a chain of declared layers, and refuse
by name what they cannot follow."""

import re
from pathlib import Path

import numpy as np
import pytest

from minissl import Tensor, compact, nn, no_grad, ops, timing
from minissl.compact import CompactionError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding_a_layer.md"


class TinyNet(nn.Module):
    """A user's own model: conv -> BN -> ReLU -> pool -> a residual block -> flatten -> dense."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(3)
        self.conv = nn.Conv2d(1, 6, 3, padding=1, rng=rng, dtype=np.float64)
        self.norm = nn.BatchNorm2d(6, dtype=np.float64)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.block = nn.BasicBlock(6, 8, stride=2, rng=rng, dtype=np.float64)
        self.head = Head(rng)

    def forward(self, x):
        x = self.pool(self.act(self.norm(self.conv(x))))
        return self.head(self.block(x))


class Head(nn.Module):
    """An undeclared Module made of declared layers: compaction looks through it."""

    def __init__(self, rng):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 10, rng=rng, dtype=np.float64)

    def forward(self, x):
        return self.fc(self.flatten(x))


def sparse_tiny_net():
    model = TinyNet().eval()
    stats = np.random.default_rng(4)
    model.norm.running_mean[:] = stats.normal(0, 0.2, 6)
    branch = model.block.branch  # two middle filters of the block's branch, with their riders
    branch[0].weight.data[[2, 5]] = 0
    branch[1].weight.data[[2, 5]] = 0
    branch[1].bias.data[[2, 5]] = 0
    model.head.fc.weight.data[:, :16] = 0  # every column of channel 0 of the flattened map
    return model


def test_a_users_own_module_compacts_to_the_same_function():
    model = sparse_tiny_net()
    x = np.random.default_rng(5).random((4, 1, 16, 16))
    small, plan = compact.compact(model, input_shape=(1, 16, 16))
    assert [layer.name for layer in plan.layers][:2] == ["conv", "norm"]
    assert plan.layer("conv").kept_out == [0, 1, 2, 3, 4, 5]  # a block keeps its widths
    assert plan.layer("block.branch.0").kept_out == [0, 1, 3, 4, 6, 7]
    assert plan.layer("block.branch.1").kept_out == [0, 1, 3, 4, 6, 7]
    assert plan.layer("block.branch.3").kept_in == [0, 1, 3, 4, 6, 7]
    assert len(plan.layer("head.fc").kept_in) == 8 * 16  # the block's output stays whole
    with no_grad():
        np.testing.assert_allclose(small(Tensor(x)).data, model(Tensor(x)).data, atol=1e-10)


def test_following_the_forward_changes_no_state_of_the_model():
    model = sparse_tiny_net().train()
    before = {key: value.copy() for key, value in model.state_dict().items()}
    compact.plan_compaction(model, input_shape=(1, 16, 16))
    assert all(module.training for _, module in model.named_modules())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_timing_walks_a_users_own_module():
    model = sparse_tiny_net()
    plan = compact.plan_compaction(model, input_shape=(1, 16, 16))
    x = Tensor(np.random.default_rng(6).random((2, 1, 16, 16)))
    speeds = timing.layer_speeds(model, plan, x, layers=["conv", "head.fc"], repeats=2,
                                 warmup=1, min_seconds=0.0)
    assert [speed.layer for speed in speeds] == ["conv", "head.fc"]
    assert speeds[0].flop_pct == 100.0


class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc2(ops.relu(self.fc1(x)))


class CallsALayerItDoesNotOwn(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)

    def forward(self, x):
        return nn.ReLU()(self.fc1(x))


class SharesALayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


class ReshapesAtTheEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return ops.relu(self.fc(x))


class Sigmoidish(nn.Module):  # computes without declaring the protocol
    def forward(self, x):
        return ops.add(x, 1.0)


class UsesAnUndeclaredLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.odd = nn.Linear(4, 4), Sigmoidish()

    def forward(self, x):
        return self.odd(self.fc(x))


@pytest.mark.parametrize("model, message", [
    (FunctionalRelu(), r"layer fc2 does not take the output of layer fc1 \(an operation "
                       r"outside a declared layer"),
    (CallsALayerItDoesNotOwn(), r"calls a ReLU that is not a sub-module"),
    (SharesALayer(), r"calls layer fc twice"),
    (ReshapesAtTheEnd(), r"does not return the output of layer fc"),
    (UsesAnUndeclaredLayer(), r"layer odd \(Sigmoidish\) does not declare the layer protocol"),
    (nn.Sequential(nn.Linear(4, 4), Sigmoidish()), r"layer 1 \(Sigmoidish\) does not declare"),
])
def test_what_compaction_cannot_follow_is_refused_by_name(model, message):
    with pytest.raises(CompactionError, match=message):
        compact.compact(model, input_shape=(4,))


def test_a_layer_that_does_not_keep_zeros_keeps_the_channels_behind_it():
    class PlusOne(nn.Channelwise):
        maps_zero_to_zero = False

        def forward(self, x):
            return ops.add(x, 1.0)

    rng = np.random.default_rng(7)
    for middle, kept in ((nn.ReLU(), 5), (PlusOne(), 8)):
        model = nn.Sequential(nn.Linear(6, 8, rng=rng, dtype=np.float64), middle,
                              nn.Linear(8, 3, rng=rng, dtype=np.float64))
        model[0].weight.data[:3] = 0
        model[0].bias.data[:3] = 0
        small, plan = compact.compact(model)
        assert len(plan.layer("0").kept_out) == kept
        x = Tensor(rng.random((4, 6)))
        with no_grad():
            np.testing.assert_allclose(small(x).data, model(x).data, atol=1e-12)


def test_a_channelwise_layer_must_say_whether_it_keeps_zeros():
    class Silent(nn.Channelwise):
        def forward(self, x):
            return x

    model = nn.Sequential(nn.Linear(6, 8), Silent(), nn.Linear(8, 3))
    model[0].weight.data[:3] = 0
    model[0].bias.data[:3] = 0
    with pytest.raises(CompactionError, match=r"Silent\) does not declare whether it maps zero"):
        compact.compact(model)


def test_no_layer_type_dispatch_is_left_in_compaction_timing_and_ssl():
    """No isinstance on a layer class in compact/, timing.py or ssl/."""
    layer_names = "|".join(name for name in dir(nn) if isinstance(getattr(nn, name), type))
    pattern = re.compile(rf"isinstance\([^)]*\b(nn\.\w+|{layer_names})\b")
    files = [*(ROOT / "minissl" / "compact").glob("*.py"), ROOT / "minissl" / "timing.py",
             *(ROOT / "minissl" / "ssl").glob("*.py")]
    offending = [f"{path.name}: {line.strip()}" for path in files
                 for line in path.read_text().splitlines() if pattern.search(line)]
    assert not offending, offending


def test_the_adding_a_layer_page_runs_as_written(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    namespace = {"__name__": "adding_a_layer"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "hidden units left: 40; FLOPs" in printed
    assert "behind Shifted, hidden units left: 100" in printed
    assert "layer 1 (Undeclared) does not declare the layer protocol" in printed
