"""Layers: Linear, ReLU, Flatten, Sequential.

Weights follow docs/design.md ("Weight views and groups"): a dense weight is (out, in), so
row o holds the incoming connections of output neuron o and column i the outgoing
connections of input unit i.
Each layer declares what it is to SSL and compaction (minissl/nn/protocol.py).
"""

import numpy as np

from minissl import ops
from minissl.backend import to_numpy
from minissl.nn.init import INITIALIZERS
from minissl.nn.module import Channelwise, Module, Parameter
from minissl.nn.protocol import Role
from minissl.ssl.groups import GroupKind


class Linear(Module):
    """Dense layer y = x W^T + b.

    Shapes: x (B, in_features) -> (B, out_features); weight (out, in), bias (out,).
    `init` is "he" (default, for ReLU networks) or "xavier"; `rng` is a
    numpy.random.Generator (default: a fresh one seeded with 0). Bias starts at zero.
    """

    def __init__(self, in_features, out_features, bias=True, init="he", rng=None, dtype=np.float32):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got in={in_features}, out={out_features}")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALIZERS)}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(INITIALIZERS[init]((out_features, in_features), rng, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects input "
                             f"(B, {self.in_features}), got {x.shape}")
        return ops.linear(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"

    # ---- the layer protocol (minissl/nn/protocol.py) --------------------------
    role = Role.WEIGHTS
    plan_kind = "linear"
    # SSL groups: column W[:, i] (all outgoing connections of input unit i), row W[o, :]
    ssl_group_axes = {GroupKind.NEURON_IN: (1,), GroupKind.NEURON_OUT: (0,)}
    gathers_columns = False  # a dense column is an input unit: dropping it drops the input

    def sample_shape(self, shape):
        return (self.out_features,)

    def input_mismatch(self, shape):
        return None if tuple(shape) == (self.in_features,) else f"{self.in_features} inputs"

    def fixed_input_shape(self):
        return (self.in_features,)

    def weight_by_channel(self, features_per_channel):
        """W (NumPy) as (out, channels, features_per_channel): after a Flatten of a (C, H, W)
        map, input channel c is the block of H*W columns c*H*W ... (c+1)*H*W - 1."""
        weight = to_numpy(self.weight.data)
        return weight.reshape(weight.shape[0], -1, features_per_channel)

    def input_entries(self, channels, taps):
        """Kept entries of the input's axis 1 (features) for kept input channels, each a
        block of `taps` features (a flattened channel). Shapes: (c,) -> (c * taps,)."""
        return (channels[:, None] * taps + np.arange(taps)).ravel()

    def compacted_shape(self, rows, channels, width, gathered):
        """The compacted weight's shape: (kept outputs, kept input features)."""
        return [rows, width]

    def flops(self, out_shape, rows, columns):
        """FLOPs per sample of a (rows, columns) weight: one multiply-add per weight."""
        return 2 * rows * columns

    def compacted(self, name, plan):
        """A Linear holding W[kept_out][:, kept_in] and b[kept_out]."""
        layer_plan = plan.layer(name)
        weight = to_numpy(self.weight.data)
        kept_out, kept_in = np.asarray(layer_plan.kept_out), np.asarray(layer_plan.kept_in)
        layer = Linear(len(kept_in), len(kept_out), bias=self.bias is not None, dtype=weight.dtype)
        layer.weight = Parameter(weight[kept_out][:, kept_in].copy())
        if self.bias is not None:
            layer.bias = Parameter(to_numpy(self.bias.data)[kept_out].copy())
        return layer

    def gemm_operands(self, x):
        """(W, x^T): matmul of the two is this layer's product. Shapes: (out, in), (in, B)."""
        return self.weight.data, x.data.T.copy()

    def csr_forward(self, csr, x):
        """The layer with its weight in scipy CSR form `csr` (unstructured sparsity)."""
        out = (csr @ to_numpy(x.data).T).T  # (B, out)
        return out + to_numpy(self.bias.data) if self.bias is not None else out


class ReLU(Channelwise):
    """max(x, 0) elementwise. Shapes: (*S) -> (*S)."""

    maps_zero_to_zero = True  # relu(0) = 0

    def forward(self, x):
        return ops.relu(x)

    def __repr__(self):
        return "ReLU()"


class Flatten(Channelwise):
    """Flatten every axis after the batch axis. Shapes: (B, *S) -> (B, prod(S)).

    To compaction, channel c of a (C, H, W) input becomes the H*W features c*H*W ... .
    """

    maps_zero_to_zero = True

    def sample_shape(self, shape):
        return (int(np.prod(shape)),)

    def features_per_channel(self, shape):
        return int(np.prod(shape[1:]))

    def forward(self, x):
        return ops.reshape(x, (x.shape[0], -1))

    def __repr__(self):
        return "Flatten()"


class Sequential(Module):
    """Apply modules in order; indexable, iterable, and named "0", "1", ... in state_dict."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential item {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    role = Role.CONTAINER

    def sample_shape(self, shape):
        for module in self._modules.values():
            shape = module.sample_shape(shape)
        return shape

    def input_mismatch(self, shape):
        return self[0].input_mismatch(shape) if len(self) else None

    def compacted(self, name, plan):
        prefix = f"{name}." if name else ""
        return Sequential(*(module.compacted(f"{prefix}{child}", plan)
                            for child, module in self._modules.items()))

    def __repr__(self):
        inner = "\n".join(f"  ({name}): {module!r}" for name, module in self._modules.items())
        return f"Sequential(\n{inner}\n)"
