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
from test_serialize import FAMILIES, every_layer_kind  # noqa: E402


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
    if images[shape] is None:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    inputs = images[shape][:16]
    small, _ = compact.compact(sparse, shape)
    for name, model in (("sparse", sparse), ("compacted", small)):
        path = minissl.onnx.export(model, tmp_path / f"{name}.onnx", shape)
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
    proto = minissl.onnx.to_model(small, shape)
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
