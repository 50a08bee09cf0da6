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
    GatheredConv2d (a shape-compacted convolution) -> a Gather of the channels that keep any
                  column and a Conv with zeros in the others (`gathered="channels"`, the
                  default: the faster in onnxruntime), or Pad, one Gather of the kept
                  (c, kh, kw) patch rows from the flattened padded input and a MatMul with
                  the kept columns W2 (C_out, R) (`gathered="patches"`: the GEMM shrinks as
                  in minissl, no zero column is multiplied).

The graph takes one float input "input" of shape (batch, *input_shape), batch free, and
returns "output". Needs the optional `onnx` package (pip install -e ".[onnx]").
"""

from pathlib import Path

import numpy as np

from minissl.atomic import atomic_file
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

    def __init__(self, onnx, gathered="patches"):
        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], 0
        self.gathered = gathered

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
    """The shape-compacted convolution in the graph's chosen construction (graph.gathered)."""
    if graph.gathered == "channels":
        return _gathered_conv_by_channels(graph, layer, x, shape)
    return _gathered_conv_by_patches(graph, layer, x, shape)


def _gathered_conv_by_channels(graph, layer, x, shape):
    """Gather the channels that keep any column -> Conv whose other columns are zero: the
    runtime's own convolution over the kept channels (the zero columns are multiplied)."""
    (kernel_h, kernel_w), stride, padding = layer.kernel_size, layer.stride, layer.padding
    taps = kernel_h * kernel_w
    rows = np.asarray(layer.rows, dtype=np.int64)
    channels = np.unique(rows // taps)
    position = {channel: index for index, channel in enumerate(channels)}
    weight2 = to_numpy(layer.weight.data)  # (C_out, R)
    weight = np.zeros((weight2.shape[0], len(channels) * taps), dtype=weight2.dtype)
    weight[:, [position[row // taps] * taps + row % taps for row in rows]] = weight2
    x = graph.node("Gather", [x, graph.constant("channels", channels)], axis=1)
    inputs = [x, graph.constant("weight", weight.reshape(-1, len(channels), kernel_h, kernel_w))]
    if layer.bias is not None:
        inputs.append(graph.constant("bias", to_numpy(layer.bias.data)))
    out = graph.node("Conv", inputs, kernel_shape=[kernel_h, kernel_w], strides=[stride, stride],
                     pads=[padding] * 4)
    return out, (layer.out_channels, conv_output_size(shape[1], kernel_h, stride, padding),
                 conv_output_size(shape[2], kernel_w, stride, padding))


def _gathered_conv_by_patches(graph, layer, x, shape):
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


GATHERED = ("channels", "patches")


def to_model(model, input_shape, gathered="channels"):
    """The onnx.ModelProto of `model` (a Sequential of minissl.nn layers, or a layer) for
    inputs of shape (batch, *input_shape), batch free. `gathered` is how a shape-compacted
    convolution is written: "channels" (the default: one Gather of the channels that keep any
    column, then the runtime's Conv with zeros in the other columns) or "patches" (one Gather
    of its kept patch rows and a MatMul with the kept columns: only they are multiplied).
    In onnxruntime "channels" was the faster on every shape-compacted row measured
    (benchmarks.onnx_speedup, docs/results.md): its Conv beats a Gather and MatMul.
    Raises ValueError naming a layer it cannot express."""
    if gathered not in GATHERED:
        raise ValueError(f"gathered must be one of {GATHERED}, got {gathered!r}")
    onnx = _onnx()
    graph = _Graph(onnx, gathered)
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


def export(model, path, input_shape, gathered="channels"):
    """Write `model` as ONNX to `path` (checked with onnx.checker, full_check) and return the
    Path; `gathered` as in to_model. Atomic: a failed write leaves no file."""
    onnx = _onnx()
    proto = to_model(model, input_shape, gathered)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    with atomic_file(path, "wb") as file:
        file.write(proto.SerializeToString())
    return path


# ---- import: an ONNX graph of the same operator set -> minissl layers --------------------

IMPORTED_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "AveragePool",
                "GlobalAveragePool", "BatchNormalization", "Flatten", "Reshape", "Gather",
                "Identity", "Dropout")


class OnnxImportError(ValueError):
    """An ONNX graph minissl cannot build: another operator, or a form it does not take."""


def load(path):
    """A minissl model (a Sequential, in eval mode) of the ONNX graph at `path`: a chain of
    Conv, Gemm (or MatMul + Add), Relu, MaxPool, AveragePool, GlobalAveragePool,
    BatchNormalization, Flatten or Reshape to (batch, -1), Gather of constant indices on axis
    1 (a compacted model's kept inputs or channels: nn.Take), and residual blocks (two paths
    from one tensor joined by Add, then Relu) as BasicBlocks; Identity and Dropout are
    dropped. A model exported by `export` (shape-compacted convolutions by "channels")
    loads back as the same function.
    The parameters are Parameters, so the model trains, takes SSL groups and compacts like
    any other. Raises OnnxImportError naming the node and its operator when the graph holds
    anything else."""
    onnx = _onnx()
    model = onnx.load(str(path))
    return _Importer(onnx, model.graph).build()


class _Importer:
    def __init__(self, onnx, graph):
        self.onnx = onnx
        self.arrays = {tensor.name: onnx.numpy_helper.to_array(tensor)
                       for tensor in graph.initializer}
        inputs = [value.name for value in graph.input if value.name not in self.arrays]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise OnnxImportError(f"the graph must have one input and one output, has "
                                  f"{len(inputs)} and {len(graph.output)}")
        self.input, self.output = inputs[0], graph.output[0].name
        self.nodes = list(graph.node)
        for node in self.nodes:
            if node.op_type not in IMPORTED_OPS:
                raise OnnxImportError(f"node {node.name or node.output[0]!r} is a "
                                      f"{node.op_type}, which minissl does not import (it "
                                      f"takes {', '.join(IMPORTED_OPS)})")
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def attribute(self, node, name, default=None):
        for attribute in node.attribute:
            if attribute.name == name:
                return self.onnx.helper.get_attribute_value(attribute)
        return default

    def constant(self, node, index):
        name = node.input[index]
        if name not in self.arrays:
            raise OnnxImportError(f"node {node.name or node.output[0]!r} ({node.op_type}): "
                                  f"input {name!r} must be a constant (an initializer)")
        return self.arrays[name]

    def build(self):
        from minissl import nn

        layers, last = self.chain(self.input, self.output)
        if last != self.output:
            raise OnnxImportError(f"the graph does not end in its output {self.output!r}")
        return nn.Sequential(*layers).eval()

    def next_nodes(self, tensor):
        """The nodes that read `tensor`."""
        return self.consumers.get(tensor, [])

    def chain(self, tensor, stop):
        """Layers from `tensor` until `stop` (or a join): (layers, the tensor reached)."""
        layers = []
        while tensor != stop:
            following = self.next_nodes(tensor)
            if not following:
                break
            if len(following) == 2:  # a fork: a residual block
                block, tensor = self.block(tensor, following)
                layers.append(block)
                continue
            node = following[0]
            if node.op_type == "Add" and self.is_join(node):
                break
            layer, tensor = self.layer(node)
            if layer is not None:
                layers.append(layer)
        return layers, tensor

    def is_join(self, node):
        return all(name not in self.arrays for name in node.input)

    def block(self, tensor, following):
        from minissl import nn

        paths = [self.path_to_join(node, tensor) for node in following]
        joins = {join.output[0] for _, join in paths}
        if len(joins) != 1:
            raise OnnxImportError(f"tensor {tensor!r} feeds two paths that do not meet in one Add")
        (first, join), (second, _) = paths
        branch, shortcut = (first, second) if len(first) >= len(second) else (second, first)
        relu = self.next_nodes(join.output[0])
        if len(relu) != 1 or relu[0].op_type != "Relu":
            raise OnnxImportError(f"the residual Add {join.name or join.output[0]!r} must be "
                                  f"followed by Relu (a BasicBlock's relu(branch + shortcut))")
        block = nn.BasicBlock.from_parts(nn.Sequential(*branch),
                                         nn.Sequential(*shortcut) if shortcut else None)
        return block, relu[0].output[0]

    def path_to_join(self, node, tensor):
        """The layers from `node` (a consumer of `tensor`) to the Add that joins, and the Add."""
        layers = []
        while not (node.op_type == "Add" and self.is_join(node)):
            layer, tensor = self.layer(node)
            if layer is not None:
                layers.append(layer)
            following = self.next_nodes(tensor)
            if len(following) != 1:
                raise OnnxImportError(f"a path inside a residual block forks at {tensor!r}")
            node = following[0]
        return layers, node

    def layer(self, node):
        """(a minissl layer or None, the node's output) of one node (MatMul takes its Add)."""
        from minissl import nn

        op, out, where = node.op_type, node.output[0], f"node {node.name or node.output[0]!r}"
        if op in ("Identity", "Dropout"):
            return None, out
        if op == "Relu":
            return nn.ReLU(), out
        if op == "Conv":
            return self.conv(node, where), out
        if op in ("Gemm", "MatMul"):
            return self.linear(node, where)
        if op == "BatchNormalization":
            scale, shift, mean, var = (self.constant(node, index) for index in range(1, 5))
            layer = nn.BatchNorm2d(len(scale), eps=float(self.attribute(node, "epsilon", 1e-5)),
                                   dtype=scale.dtype)
            layer.load_state_dict({"weight": scale, "bias": shift, "running_mean": mean,
                                   "running_var": var})
            return layer, out
        if op in ("MaxPool", "AveragePool"):
            return self.pool(node, where), out
        if op == "Gather":
            indices = self.constant(node, 1)
            if self.attribute(node, "axis", 0) != 1 or indices.ndim != 1:
                raise OnnxImportError(f"{where}: Gather must take constant 1-D indices on axis 1 "
                                      f"(kept inputs or channels)")
            return nn.Take(indices.astype(np.int64)), out
        if op == "GlobalAveragePool":
            following = self.next_nodes(out)
            if len(following) == 1 and following[0].op_type in ("Flatten", "Reshape"):
                return nn.GlobalAvgPool2d(), following[0].output[0]
            raise OnnxImportError(f"{where}: GlobalAveragePool must be followed by Flatten")
        if op in ("Flatten", "Reshape"):
            if op == "Flatten" and self.attribute(node, "axis", 1) != 1:
                raise OnnxImportError(f"{where}: Flatten must keep axis 0 (axis=1)")
            if op == "Reshape":
                shape = self.constant(node, 1)
                if len(shape) != 2 or shape[0] not in (0, -1) and shape[1] != -1:
                    raise OnnxImportError(f"{where}: Reshape must flatten to (batch, -1), got "
                                          f"{shape.tolist()}")
            return nn.Flatten(), out
        raise OnnxImportError(f"{where}: {op} where minissl does not take it (a residual Add "
                              f"must join two paths from one tensor)")

    def conv(self, node, where):
        from minissl import nn

        weight = self.constant(node, 1)
        bias = self.constant(node, 2) if len(node.input) > 2 and node.input[2] else None
        strides = list(self.attribute(node, "strides", [1, 1]))
        pads = list(self.attribute(node, "pads", [0, 0, 0, 0]))
        if (self.attribute(node, "group", 1) != 1 or list(self.attribute(node, "dilations", [1, 1]))
                != [1, 1] or len(set(strides)) != 1 or len(set(pads)) != 1):
            raise OnnxImportError(f"{where}: Conv must have one group, no dilation and the same "
                                  f"stride and padding on every side")
        layer = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), strides[0],
                          pads[0], bias=bias is not None, dtype=weight.dtype)
        layer.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
        return layer

    def linear(self, node, where):
        from minissl import nn

        weight, out = self.constant(node, 1), node.output[0]
        bias = None
        if node.op_type == "Gemm":
            if self.attribute(node, "transA", 0) or self.attribute(node, "alpha", 1.0) != 1.0 or \
                    self.attribute(node, "beta", 1.0) != 1.0:
                raise OnnxImportError(f"{where}: Gemm must have transA 0, alpha 1 and beta 1")
            weight = weight if self.attribute(node, "transB", 0) else weight.T
            if len(node.input) > 2 and node.input[2]:
                bias = self.constant(node, 2)
        else:  # MatMul(x, W) with W (in, out), then Add(bias)
            weight = weight.T
            following = self.next_nodes(out)
            if len(following) == 1 and following[0].op_type == "Add" and not self.is_join(
                    following[0]):
                add = following[0]
                bias = self.arrays[next(name for name in add.input if name in self.arrays)]
                out = add.output[0]
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                          dtype=weight.dtype)
        layer.load_state_dict({"weight": np.ascontiguousarray(weight),
                               **({"bias": bias.reshape(-1)} if bias is not None else {})})
        return layer, out

    def pool(self, node, where):
        from minissl import nn

        kernel = list(self.attribute(node, "kernel_shape"))
        strides = list(self.attribute(node, "strides", kernel))
        pads = list(self.attribute(node, "pads", [0, 0, 0, 0]))
        if len(set(kernel)) != 1 or len(set(strides)) != 1 or any(pads):
            raise OnnxImportError(f"{where}: {node.op_type} must have a square window, one "
                                  f"stride and no padding")
        kind = nn.MaxPool2d if node.op_type == "MaxPool" else nn.AvgPool2d
        return kind(int(kernel[0]), int(strides[0]), bool(self.attribute(node, "ceil_mode", 0)))
