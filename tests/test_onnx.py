"""minissl.onnx: dense, sparse and compacted models of every family exported to ONNX, checked
by onnx's full checker, and computing minissl's outputs on real images in onnx's reference
evaluator and in onnxruntime."""

import numpy as np
import pytest

import minissl
from minissl import Tensor, compact, nn, no_grad

onnx = pytest.importorskip("onnx", reason="minissl.onnx needs onnx (pip install -e '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[onnx]')")

from onnx.reference import ReferenceEvaluator  # noqa: E402
from test_serialize import FAMILIES, every_layer_kind, family_inputs  # noqa: E402


def minissl_outputs(model, inputs):
    model.eval()
    with no_grad():
        return minissl.to_numpy(model(Tensor(inputs)).data)


def runtime_outputs(path, inputs):
    reference = ReferenceEvaluator(str(path)).run(None, {"input": inputs})[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return reference, session.run(None, {"input": inputs})[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_exports_and_computes_the_same_outputs(family, images, tmp_path):
    sparse, shape = FAMILIES[family]()
    inputs = family_inputs(images, shape)[:16]
    small, _ = compact.compact(sparse, shape)
    for name, model, gathered in (("sparse", sparse, "channels"),
                                  ("compacted", small, "channels"),
                                  ("compacted by patches", small, "patches")):
        path = minissl.onnx.export(model, tmp_path / f"{name}.onnx", shape, gathered)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        expected = minissl_outputs(model, inputs)
        for runtime, got in zip(("reference", "onnxruntime"), runtime_outputs(path, inputs)):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{family} {name} in {runtime}")
            assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_the_shape_compacted_convolution_multiplies_only_its_kept_columns(tmp_path):
    sparse, shape = FAMILIES["lenet"]()
    small, _ = compact.compact(sparse, shape)
    gathered = [layer for _, layer in small.named_modules() if isinstance(layer, nn.GatheredConv2d)]
    proto = minissl.onnx.to_model(small, shape, gathered="patches")
    products = [node for node in proto.graph.node if node.op_type == "MatMul"]
    weights = {tensor.name: tensor for tensor in proto.graph.initializer}
    assert len(products) == len(gathered) == 1
    assert list(weights[products[0].input[0]].dims) == list(gathered[0].weight.shape)


def test_every_layer_kind_exports(tmp_path):
    model = every_layer_kind().eval()
    inputs = np.random.default_rng(0).standard_normal((3, 3, 15, 15)).astype(np.float32)
    path = minissl.onnx.export(model, tmp_path / "all.onnx", (3, 15, 15))
    for got in runtime_outputs(path, inputs):
        np.testing.assert_allclose(got, minissl_outputs(model, inputs), rtol=1e-4, atol=1e-5)


def test_a_layer_onnx_cannot_express_is_refused_by_name(tmp_path):
    class Mine(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="cannot export a Mine to ONNX"):
        minissl.onnx.export(nn.Sequential(nn.ReLU(), Mine()), tmp_path / "x.onnx", (4,))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_a_graph_of_the_imported_operators_loads_as_the_same_model(family, images, tmp_path):
    sparse, shape = FAMILIES[family]()
    inputs = family_inputs(images, shape)[:16]
    small, _ = compact.compact(sparse, shape)
    back = minissl.onnx.load(minissl.onnx.export(small, tmp_path / "small.onnx", shape))
    np.testing.assert_allclose(minissl_outputs(back, inputs), minissl_outputs(small, inputs),
                               rtol=1e-5, atol=1e-6)  # compacted: export -> load, same function
    loaded = minissl.onnx.load(minissl.onnx.export(sparse, tmp_path / "model.onnx", shape))
    assert repr(loaded) == repr(sparse)
    assert all(isinstance(parameter, nn.Parameter) for parameter in loaded.parameters())
    np.testing.assert_allclose(minissl_outputs(loaded, inputs), minissl_outputs(sparse, inputs),
                               rtol=1e-5, atol=1e-6)
    again = minissl.onnx.export(loaded, tmp_path / "again.onnx", shape)  # load -> export
    for got in runtime_outputs(again, inputs):
        np.testing.assert_allclose(got, minissl_outputs(sparse, inputs), rtol=1e-4, atol=1e-5)


def _graph_trained_elsewhere(path):
    """An MLP as other frameworks write it: MatMul + Add, a Reshape to (batch, -1)."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(5)
    w1, b1 = rng.standard_normal((16, 12)).astype(np.float32), np.zeros(12, np.float32)
    w2, b2 = rng.standard_normal((12, 3)).astype(np.float32), rng.random(3).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["r"]),
             helper.make_node("MatMul", ["r", "w1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"])]
    arrays = {"flat": np.array([0, -1]), "w1": w1, "b1": b1, "w2": w2, "b2": b2}
    graph = helper.make_graph(
        nodes, "elsewhere",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(value, name) for name, value in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_network_from_elsewhere_is_ssl_trained_compacted_and_exported_again(tmp_path):
    from minissl import ssl
    from minissl.ssl import GroupKind, GroupRule

    _graph_trained_elsewhere(tmp_path / "elsewhere.onnx")
    model = minissl.onnx.load(tmp_path / "elsewhere.onnx")
    inputs = np.random.default_rng(6).standard_normal((8, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "elsewhere.onnx"),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(minissl_outputs(model, inputs),
                               session.run(None, {"x": inputs})[0], rtol=1e-5, atol=1e-5)
    norms = np.linalg.norm(model[1].weight.data, axis=1)  # the hidden units' groups (bias 0)
    rule = GroupRule("1", GroupKind.NEURON_OUT, float(np.median(norms)))
    ssl.GroupLasso(model, ssl.SSLConfig([rule])).after_step(1.0)  # the weaker half goes
    small, plan = compact.compact(model, input_shape=(4, 4))
    assert plan.layer("1").shape_after[0] < 12
    path = minissl.onnx.export(small, tmp_path / "small.onnx", (4, 4))
    for got in runtime_outputs(path, inputs):
        np.testing.assert_allclose(got, minissl_outputs(model, inputs), rtol=1e-4, atol=1e-5)


def test_a_graph_with_another_operator_is_refused_naming_the_node(tmp_path):
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"], name="squash")], "other",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(minissl.onnx.OnnxImportError, match="node 'squash' is a Sigmoid"):
        minissl.onnx.load(tmp_path / "other.onnx")
