"""Layers: Linear, ReLU, Flatten, Sequential.

Weights follow DESIGN.md: a dense weight is (out, in), so row o holds the incoming
connections of output neuron o and column i the outgoing connections of input unit i.
"""

import numpy as np

from minissl import ops
from minissl.nn.init import INITIALIZERS
from minissl.nn.module import Module, Parameter


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


class ReLU(Module):
    """max(x, 0) elementwise. Shapes: (*S) -> (*S)."""

    def forward(self, x):
        return ops.relu(x)

    def __repr__(self):
        return "ReLU()"


class Flatten(Module):
    """Flatten every axis after the batch axis. Shapes: (B, *S) -> (B, prod(S))."""

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

    def __repr__(self):
        inner = "\n".join(f"  ({name}): {module!r}" for name, module in self._modules.items())
        return f"Sequential(\n{inner}\n)"
