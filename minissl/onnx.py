"""Export a minissl model, dense, sparse or compacted, to ONNX (opset OPSET), so that its
outputs and its speed can be checked in another runtime (onnxruntime) and deployed there.

    minissl.onnx.export(small, "lenet_ssl.onnx", input_shape=(1, 28, 28))

Each layer of minissl.nn becomes standard ONNX operators:

    Linear -> Gemm (transB)           Conv2d -> Conv            BatchNorm2d -> BatchNormalization
    ReLU -> Relu                      Flatten -> Flatten         Dropout -> nothing (inference)
    MaxPool2d / AvgPool2d -> MaxPool / AveragePool (ceil_mode as the layer's; the average over
                                      the window's in-image pixels, count_include_pad 0)
    GlobalAvgPool2d -> GlobalAveragePool + Flatten
    Take (a compacted MLP's input gather) -> Gather on axis 1
    BasicBlock -> its branch and shortcut, Add, Relu; a block removed by depth compaction is
                  already the layers it left (relu(shortcut(x)))
    GatheredConv2d (a shape-compacted convolution) -> Pad, one Gather of the kept (c, kh, kw)
                  patch rows from the flattened padded input, MatMul with the kept columns
                  W2 (C_out, R), Add the bias: the GEMM shrinks as in minissl, no zero column
                  is multiplied.

The graph takes one float input "input" of shape (batch, *input_shape), batch free, and
returns "output". Needs the optional `onnx` package (pip install -e ".[onnx]").
"""

from pathlib import Path

import numpy as np

from minissl.backend import to_numpy
from minissl.kernels import conv_output_size, pool_output_size

OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("minissl.onnx needs the onnx package: pip install -e '.[onnx]'") from error
    return onnx


class _Graph:
    """The nodes and initializers of a graph under construction, with unique names."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, stem, array):
        name = self.name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, stem=None, **attributes):
        output = self.name(stem or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], **attributes))
        return output


def _linear(graph, layer, x, shape):
    weight = graph.constant("weight", to_numpy(layer.weight.data))
    inputs = [x, weight] + ([graph.constant("bias", to_numpy(layer.bias.data))]
                            if layer.bias is not None else [])
    return graph.node("Gemm", inputs, transB=1), (layer.out_features,)


def _conv(graph, layer, x, shape):
    (kernel_h, kernel_w), stride, padding = layer.kernel_size, layer.stride, layer.padding
    weight = graph.constant("weight", to_numpy(layer.weight.data))
    inputs = [x, weight] + ([graph.constant("bias", to_numpy(layer.bias.data))]
                            if layer.bias is not None else [])
    out = graph.node("Conv", inputs, kernel_shape=[kernel_h, kernel_w], strides=[stride, stride],
                     pads=[padding] * 4)
    return out, (layer.out_channels, conv_output_size(shape[1], kernel_h, stride, padding),
                 conv_output_size(shape[2], kernel_w, stride, padding))


def _gathered_conv(graph, layer, x, shape):
    """Pad -> Gather the kept patch rows -> MatMul with W2 (C_out, R) -> Add the bias."""
    channels, height, width = shape
    (kernel_h, kernel_w), stride, padding = layer.kernel_size, layer.stride, layer.padding
    out_h = conv_output_size(height, kernel_h, stride, padding)
    out_w = conv_output_size(width, kernel_w, stride, padding)
    padded_h, padded_w = height + 2 * padding, width + 2 * padding
    rows = np.asarray(layer.rows, dtype=np.int64)
    c, kh, kw = rows // (kernel_h * kernel_w), rows // kernel_w % kernel_h, rows % kernel_w
    oh, ow = np.arange(out_h) * stride, np.arange(out_w) * stride
    # flat index in the padded image of patch row r at output pixel (oh, ow)
    index = (c[:, None, None] * padded_h * padded_w + (kh[:, None, None] + oh[None, :, None])
             * padded_w + kw[:, None, None] + ow[None, None, :])  # (R, OH, OW)
    if padding:
        pads = graph.constant("pads", np.array([0, 0, padding, padding, 0, 0, padding, padding]))
        x = graph.node("Pad", [x, pads])
    flat = graph.node("Reshape", [x, graph.constant("shape", np.array([0, -1]))])  # (B, C*Hp*Wp)
    patches = graph.node("Gather", [flat, graph.constant("rows", index.reshape(len(rows), -1))],
                         axis=1)  # (B, R, OH*OW)
    weight2 = graph.constant("weight2", to_numpy(layer.weight.data))  # (C_out, R)
    out = graph.node("MatMul", [weight2, patches])  # (B, C_out, OH*OW)
    if layer.bias is not None:
        bias = graph.constant("bias", to_numpy(layer.bias.data).reshape(-1, 1))  # (C_out, 1)
        out = graph.node("Add", [out, bias])
    shape_out = np.array([0, layer.out_channels, out_h, out_w])
    return graph.node("Reshape", [out, graph.constant("shape", shape_out)]), (
        layer.out_channels, out_h, out_w)


def _batch_norm(graph, layer, x, shape):
    inputs = [x] + [graph.constant(stem, to_numpy(array)) for stem, array in (
        ("scale", layer.weight.data), ("shift", layer.bias.data),
        ("mean", layer.running_mean), ("var", layer.running_var))]
    return graph.node("BatchNormalization", inputs, epsilon=float(layer.eps)), shape


def _pool(graph, layer, x, shape, op):
    size = layer.kernel_size, layer.stride, layer.ceil_mode
    attributes = {"kernel_shape": [layer.kernel_size] * 2, "strides": [layer.stride] * 2,
                  "ceil_mode": int(layer.ceil_mode)}
    if op == "AveragePool":
        attributes["count_include_pad"] = 0
    return graph.node(op, [x], **attributes), (
        shape[0], pool_output_size(shape[1], *size), pool_output_size(shape[2], *size))


def _block(graph, block, x, shape):
    branch, branch_shape = _emit(graph, block.branch, x, shape)
    identity = x if block.shortcut is None else _emit(graph, block.shortcut, x, shape)[0]
    return graph.node("Relu", [graph.node("Add", [branch, identity])]), branch_shape


def _sequential(graph, module, x, shape):
    for child in module:
        x, shape = _emit(graph, child, x, shape)
    return x, shape


_EMITTERS = {
    "Linear": _linear, "Conv2d": _conv, "GatheredConv2d": _gathered_conv,
    "BatchNorm2d": _batch_norm, "BasicBlock": _block, "Sequential": _sequential,
    "MaxPool2d": lambda graph, layer, x, shape: _pool(graph, layer, x, shape, "MaxPool"),
    "AvgPool2d": lambda graph, layer, x, shape: _pool(graph, layer, x, shape, "AveragePool"),
    "ReLU": lambda graph, layer, x, shape: (graph.node("Relu", [x]), shape),
    "Dropout": lambda graph, layer, x, shape: (x, shape),  # inference: the identity
    "Flatten": lambda graph, layer, x, shape: (graph.node("Flatten", [x], axis=1),
                                               (int(np.prod(shape)),)),
    "GlobalAvgPool2d": lambda graph, layer, x, shape: (
        graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], axis=1), (shape[0],)),
    "Take": lambda graph, layer, x, shape: (
        graph.node("Gather", [x, graph.constant("indices", np.asarray(layer.indices))], axis=1),
        (len(layer.indices),) + tuple(shape[1:])),
}


def _emit(graph, module, x, shape):
    kind = type(module).__name__
    if kind not in _EMITTERS:
        raise ValueError(f"cannot export a {kind} to ONNX: minissl.onnx knows "
                         f"{', '.join(sorted(_EMITTERS))}")
    return _EMITTERS[kind](graph, module, x, shape)


def to_model(model, input_shape):
    """The onnx.ModelProto of `model` (a Sequential of minissl.nn layers, or a layer) for
    inputs of shape (batch, *input_shape), batch free. Raises ValueError naming a layer
    it cannot express."""
    onnx = _onnx()
    graph = _Graph(onnx)
    dtype = to_numpy(model.parameters()[0].data).dtype if model.parameters() else np.float32
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    output, shape = _emit(graph, model, "input", tuple(input_shape))
    graph.nodes.append(onnx.helper.make_node("Identity", [output], ["output"]))
    proto = onnx.helper.make_graph(
        graph.nodes, "minissl",
        [onnx.helper.make_tensor_value_info("input", element, ["batch", *input_shape])],
        [onnx.helper.make_tensor_value_info("output", element, ["batch", *shape])],
        graph.initializers)
    return onnx.helper.make_model(proto, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                  producer_name="minissl")


def export(model, path, input_shape):
    """Write `model` as ONNX to `path` (checked with onnx.checker, full_check) and return the
    Path. Atomic: a failed write leaves no file."""
    onnx = _onnx()
    proto = to_model(model, input_shape)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_bytes(proto.SerializeToString())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
