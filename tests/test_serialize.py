"""minissl.save / minissl.load: every layer kind, dense, sparse and compacted models of every
family, round trips equal (in this process and in a fresh one, on real images), and files
that are not models refused; CompactionPlan to JSON and back."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minissl
from minissl import Tensor, compact, models, nn, no_grad, serialize
from minissl.compact import CompactionPlan


def outputs(model, inputs):
    model.eval()
    with no_grad():
        return minissl.to_numpy(model(Tensor(inputs)).data)


def sparse_mlp():
    """The paper's MLP with 300 input pixels and a third of each hidden layer zeroed."""
    model = models.mlp(seed=1)
    rng = np.random.default_rng(0)
    for layer in models.linear_layers(model):
        dead = rng.choice(layer.in_features, layer.in_features // 3, replace=False)
        layer.weight.data[:, dead] = 0
    return model, (784,)


def sparse_lenet():
    """LeNet with filters of conv1 and shape columns of conv2 zeroed (a gathered conv)."""
    model = models.lenet(seed=1)
    model[0].weight.data[12:] = 0
    model[2].weight.data[:, :, 0, :] = 0
    return model, (1, 28, 28)


def sparse_convnet():
    """The CIFAR ConvNet with filters and columns zeroed in all three convolutions."""
    model = models.cifar_convnet(seed=1)
    for index, layer in enumerate(models.conv_layers(model)):
        layer.weight.data[: 4 * (index + 1)] = 0
        layer.weight.data[:, :, 1, 1:3] = 0
    return model, (3, 32, 32)


def sparse_resnet():
    """ResNet-8 with the branch of its second block zeroed (removed by compaction), a
    projection shortcut, and BatchNorm statistics as after training."""
    model = models.resnet_cifar(8, seed=1)
    stats = np.random.default_rng(2)
    for _, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean[:] = stats.normal(0, 0.2, module.channels)
            module.running_var[:] = stats.uniform(0.5, 2.0, module.channels)
    blocks = [module for module in model if isinstance(module, nn.BasicBlock)]
    for parameter in blocks[1].branch.parameters():
        parameter.data[...] = 0
    return model, (3, 32, 32)


def every_layer_kind():
    """One model with each layer kind not in the families: ceil-mode average pooling,
    dropout (as inference), BatchNorm, global pooling, a conv without bias."""
    rng = np.random.default_rng(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(6),
                         nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.3),
                         nn.MaxPool2d(3, 2, ceil_mode=True), nn.Conv2d(6, 8, 1, rng=rng),
                         nn.GlobalAvgPool2d(), nn.Linear(8, 10, rng=rng))


FAMILIES = {"mlp": sparse_mlp, "lenet": sparse_lenet, "convnet": sparse_convnet,
            "resnet": sparse_resnet}


def family_inputs(images, shape):
    if images[shape] is None:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    return images[shape]


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_sparse_and_compacted_models_round_trip_equal(family, images, tmp_path):
    sparse, shape = FAMILIES[family]()
    inputs = family_inputs(images, shape)
    small, plan = compact.compact(sparse, shape)
    if family == "resnet":  # the family's own compacted layers are what is saved
        assert plan.removed_blocks and "BasicBlock" in repr(small)
    else:
        assert {"mlp": "Take(", "lenet": "GatheredConv2d(",
                "convnet": "GatheredConv2d("}[family] in repr(small)
    dense = {"mlp": models.mlp, "lenet": models.lenet, "convnet": models.cifar_convnet,
             "resnet": lambda: models.resnet_cifar(8)}[family]()
    for name, model in (("dense", dense), ("sparse", sparse), ("compacted", small)):
        path = minissl.save(model, tmp_path / f"{name}.npz", metadata={"family": family})
        loaded, metadata = minissl.load(path, with_metadata=True)
        assert metadata == {"family": family}
        assert repr(loaded) == repr(model), name
        np.testing.assert_array_equal(outputs(loaded, inputs), outputs(model, inputs), name)
    assert len(list(tmp_path.iterdir())) == 3  # no temporary file left behind
    assert CompactionPlan.from_json(plan.to_json()) == plan
    plan.save_json(tmp_path / "plan.json")
    assert CompactionPlan.load_json(tmp_path / "plan.json") == plan


def test_every_layer_kind_round_trips_in_eval_mode(tmp_path):
    model = every_layer_kind().eval()
    model[1].running_mean[:] = np.arange(6) / 10  # buffers are saved too
    inputs = np.random.default_rng(4).standard_normal((5, 3, 15, 15)).astype(np.float32)
    loaded = minissl.load(minissl.save(model, tmp_path / "all.npz"))
    assert not loaded.training
    np.testing.assert_array_equal(loaded[1].running_mean, model[1].running_mean)
    np.testing.assert_array_equal(outputs(loaded, inputs), outputs(model, inputs))
    kinds = {node["type"] for node in _nodes(serialize.describe(model))}
    assert {"AvgPool2d", "Dropout", "BatchNorm2d", "GlobalAvgPool2d", "MaxPool2d"} <= kinds


def _nodes(node):
    yield node
    for child in node.get("children", {}).values():
        yield from _nodes(child)


def test_a_compacted_model_loads_equal_in_a_fresh_process(images, tmp_path):
    """Saved here, loaded by another Python process: the same logits on real images."""
    expected = {}
    for family, make in FAMILIES.items():
        sparse, shape = make()
        if images[shape] is None:
            continue
        small, _ = compact.compact(sparse, shape)
        minissl.save(small, tmp_path / f"{family}.npz")
        np.save(tmp_path / f"{family}_inputs.npy", images[shape])
        expected[family] = outputs(small, images[shape])
    script = ("import sys, numpy as np, minissl\n"
              "from minissl import Tensor, no_grad\n"
              "folder = sys.argv[1]\n"
              "for family in sys.argv[2:]:\n"
              "    model = minissl.load(f'{folder}/{family}.npz')\n"
              "    with no_grad():\n"
              "        logits = model(Tensor(np.load(f'{folder}/{family}_inputs.npy'))).data\n"
              "    np.save(f'{folder}/{family}_out.npy', logits)\n")
    env = {key: value for key, value in os.environ.items() if key != "MINISSL_BACKEND"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), *expected],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"mlp", "lenet"} <= set(expected)
    for family, logits in expected.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{family}_out.npy"), logits,
                                   rtol=1e-5, atol=1e-5, err_msg=family)


def test_what_cannot_be_saved_or_loaded_is_refused_by_name(tmp_path):
    class Mine(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(serialize.ModelFileError, match="cannot save a Mine at '1'"):
        minissl.save(nn.Sequential(nn.ReLU(), Mine()), tmp_path / "mine.npz")
    with pytest.raises(serialize.ModelFileError, match="metadata must be plain JSON"):
        minissl.save(nn.ReLU(), tmp_path / "bad.npz", metadata={"when": object()})
    assert list(tmp_path.iterdir()) == []  # nothing half written

    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    with pytest.raises(serialize.ModelFileError, match="not a minissl model file"):
        minissl.load(tmp_path / "weights.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(serialize.ModelFileError, match="cannot be read"):
        minissl.load(tmp_path / "text.npz")

    path = minissl.save(models.mlp((4, 3, 2)), tmp_path / "mlp.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    header = json.loads(str(arrays["__architecture__"]))
    header["architecture"]["children"]["0"]["config"]["out_features"] = 5
    arrays["__architecture__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "mismatch.npz", **arrays)
    with pytest.raises(serialize.ModelFileError, match="do not fit the architecture"):
        minissl.load(tmp_path / "mismatch.npz")
    header["architecture"]["children"]["0"]["type"] = "Evil"
    arrays["__architecture__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(serialize.ModelFileError, match="layer type 'Evil'"):
        minissl.load(tmp_path / "evil.npz")


def test_a_plan_with_a_missing_field_is_refused():
    plan = compact.plan_compaction(models.mlp((4, 3, 2)))
    broken = plan.to_dict()
    del broken["layers"][0]["kept_in"]
    with pytest.raises(ValueError, match="kept_in"):
        CompactionPlan.from_dict(broken)
