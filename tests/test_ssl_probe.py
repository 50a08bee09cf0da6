import importlib.util
from pathlib import Path

import numpy as np
import pytest

from minissl import Tensor, models, ops
from minissl.ssl import GroupKind, GroupLasso, GroupRule, SSLConfig
from minissl.ssl.probe import critical_lambdas


def loss_of(model, inputs, labels):
    return float(ops.cross_entropy(model(Tensor(inputs)), labels).data)


def data(shape, count=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, *shape)), rng.integers(0, classes, count)


def finite_difference_critical(model, group_set, index, inputs, labels, scale, momentum,
                               weight_decay, size_scale, step=1e-6):
    """-(d loss / dt) / ||w_g|| with group `index` multiplied by (1 + t), t -> 0, after the whole
    set was scaled by `scale`; minus the weight decay's pull; over (1 - m) and s_g."""
    group_set.scale(np.full(group_set.group_shape, scale))
    norm = float(group_set.norms()[index])

    def loss_at(t):
        factors = np.ones(group_set.group_shape)
        factors[index] = 1 + t
        saved = [m.parameter.data.copy() for m in group_set.members]
        group_set.scale(factors)
        value = loss_of(model, inputs, labels)
        for member, array in zip(group_set.members, saved):
            member.parameter.data[...] = array
        return value

    slope = (loss_at(step) - loss_at(-step)) / (2 * step)
    group_set.scale(np.full(group_set.group_shape, 1 / scale))
    return (-slope / norm - weight_decay * norm) / (1 - momentum) / size_scale


@pytest.mark.parametrize("scale_by_size", [False, True])
def test_critical_lambdas_equal_the_finite_difference_of_the_loss(scale_by_size):
    model = models.mlp((6, 5, 3), seed=0, dtype=np.float64)
    inputs, labels = data((6,))
    rules = [GroupRule("0", GroupKind.NEURON_IN, 0.1), GroupRule("2", GroupKind.NEURON_OUT, 0.1)]
    lasso = GroupLasso(model, SSLConfig(rules, scale_by_size=scale_by_size))
    found = critical_lambdas(model, lasso, inputs, labels, scale=0.5, momentum=0.9,
                             weight_decay=1e-3, batch_size=len(inputs))
    assert [c.shape for c in found] == [(3,), (6,)]  # NEURON_OUT sorts first
    for group_set, critical in zip(lasso.group_sets, found):
        size_scale = np.sqrt(group_set.group_size()) if scale_by_size else 1.0
        for index in np.ndindex(group_set.group_shape):
            expected = finite_difference_critical(model, group_set, index, inputs, labels, 0.5,
                                                  0.9, 1e-3, size_scale)
            assert critical[index] == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_a_residual_branch_with_batchnorm_gets_one_critical_lambda():
    model = models.resnet_cifar(8, seed=0, dtype=np.float64)
    inputs, labels = data((3, 8, 8), count=6, classes=10)
    lasso = GroupLasso(model, SSLConfig([GroupRule("4", GroupKind.DEPTH, 0.1)]))
    (critical,) = critical_lambdas(model, lasso, inputs, labels, scale=0.3,
                                   batch_size=len(inputs))
    model.train()
    expected = finite_difference_critical(model, lasso.group_sets[0], (), inputs, labels, 0.3,
                                          0.9, 0.0, 1.0)
    assert critical.shape == () and critical == pytest.approx(expected, rel=1e-4)


def test_a_zero_group_gets_its_gradient_norm_over_one_minus_momentum():
    model = models.mlp((6, 5, 3), seed=0, dtype=np.float64)
    model[0].weight.data[:, 2] = 0.0
    inputs, labels = data((6,))
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.1)]))
    (critical,) = critical_lambdas(model, lasso, inputs, labels, momentum=0.5)
    ops.cross_entropy(model(Tensor(inputs)), labels).backward()
    assert critical[2] == pytest.approx(np.linalg.norm(model[0].weight.grad[:, 2]) / 0.5)
    assert np.isfinite(critical).all()


def test_the_probe_leaves_weights_gradients_and_mode_as_they_were():
    model = models.resnet_cifar(8, seed=0, dtype=np.float64).eval()
    before = [p.data.copy() for p in model.parameters()]
    inputs, labels = data((3, 8, 8), count=4, classes=10)
    lasso = GroupLasso(model, SSLConfig([GroupRule("3", GroupKind.DEPTH, 0.1),
                                         GroupRule("0", GroupKind.FILTER, 0.1)]))
    critical_lambdas(model, lasso, inputs, labels, scale=0.2, batch_size=3)
    assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())
    assert not any(module.training for _, module in model.named_modules())


@pytest.mark.parametrize("options, message", [
    ({"scale": 0.0}, "scale must be in"), ({"scale": 1.5}, "scale must be in"),
    ({"momentum": 1.0}, "momentum must be in"), ({"weight_decay": -1e-4}, "weight_decay"),
])
def test_bad_probe_settings_are_clear_errors(options, message):
    model = models.mlp((6, 5, 3), seed=0, dtype=np.float64)
    inputs, labels = data((6,))
    lasso = GroupLasso(model, SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.1)]))
    with pytest.raises(ValueError, match=message):
        critical_lambdas(model, lasso, inputs, labels, **options)
    with pytest.raises(ValueError, match="as many labels as inputs"):
        critical_lambdas(model, lasso, inputs, labels[:3])


def load_script(name):
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_critical_lambda_script_prints_one_column_per_branch():
    script = load_script("critical_lambdas")
    model = models.resnet_cifar(14, seed=0, dtype=np.float64).eval()
    inputs, labels = data((3, 8, 8), count=4, classes=10)
    assert script.branch_labels(model) == ["1.1", "1.2", "2.1", "2.2", "3.1", "3.2"]
    rows = script.critical_table(model, inputs, labels, [1.0, 0.3], 0.9, 5e-4)
    assert [title for title, _ in rows] == ["norm", "critical lambda at scale 1",
                                            "critical lambda at scale 0.3"]
    lasso = GroupLasso(model, SSLConfig(script.depth_rules(model, 1.0)))
    direct = critical_lambdas(model, lasso, inputs, labels, scale=0.3, weight_decay=5e-4)
    assert rows[2][1] == pytest.approx([float(value) for value in direct])
    lines = script.markdown(script.branch_labels(model), rows)
    assert len(lines) == 5 and all(line.count("|") == 8 for line in lines)


@pytest.mark.parametrize("flags, message", [
    (["--entry", "mnist_mlp/baseline"], "--entry must be one of"),
    (["--scales", "0"], "--scales must each be in"), (["--images", "0"], "--images must be"),
])
def test_the_critical_lambda_script_names_bad_flags(flags, message, capsys):
    script = load_script("critical_lambdas")
    with pytest.raises(SystemExit) as stopped:
        script.parse_args(flags)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
