"""Image layers: Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, BatchNorm2d, Dropout.

A conv weight is (C_out, C_in, KH, KW) (DESIGN.md): row n of weight.reshape(C_out, -1) is
filter n, column (c, kh, kw) a shape fiber; SSL's filter, channel and shape groups are
views of it (minissl.ssl.groups).
"""

import numpy as np

from minissl import ops
from minissl.backend import xp_of
from minissl.ops.shape import Take as TakeFunction
from minissl.nn.init import INITIALIZERS
from minissl.nn.module import Module, Parameter


def _check_image(layer, x, channels=None):
    """Raise a ValueError naming `layer` (a Module) unless x is (B, channels, H, W)."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        wanted = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{layer!r} expects input {wanted}, got {x.shape}")


class Conv2d(Module):
    """2-D convolution layer (see ops.conv2d).

    Shapes: x (B, C_in, H, W) -> (B, C_out, OH, OW); weight (C_out, C_in, K, K), bias (C_out,).
    `kernel_size` is an int or (KH, KW). Weights are He-initialized from `rng` (default:
    a Generator seeded with 0); the bias starts at zero.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="he", rng=None, dtype=np.float32):
        super().__init__()
        kernel_h, kernel_w = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        if min(in_channels, out_channels, kernel_h, kernel_w, stride) < 1 or padding < 0:
            raise ValueError(f"Conv2d needs positive sizes and padding >= 0, got in={in_channels}, "
                             f"out={out_channels}, kernel={kernel_size}, stride={stride}, "
                             f"padding={padding}")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALIZERS)}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kernel_h, kernel_w), stride, padding
        shape = (out_channels, in_channels, kernel_h, kernel_w)
        self.weight = Parameter(INITIALIZERS[init](shape, rng, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype)) if bias else None

    def forward(self, x):
        _check_image(self, x, self.in_channels)
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None})")


class GatheredConv2d(Module):
    """A shape-compacted convolution: its GEMM uses only the kept (c, kh, kw) columns.

    Shapes: x (B, C_in, H, W) -> (B, C_out, OH, OW); weight (C_out, R) holds the kept
    columns of the original W.reshape(C_out, -1), `rows` (R,) their increasing indices,
    bias (C_out,) or None. Built by minissl.compact from a Conv2d whose other columns are
    all zero; it computes exactly that Conv2d's function (ops.conv2d_gathered).
    """

    def __init__(self, weight2, rows, in_channels, kernel_size, stride=1, padding=0, bias=None):
        super().__init__()
        rows = np.asarray(rows, dtype=np.int64)
        if weight2.ndim != 2 or weight2.shape[1] != len(rows):
            raise ValueError(f"GatheredConv2d needs weight (C_out, {len(rows)}), "
                             f"got {weight2.shape}")
        self.in_channels, self.out_channels = in_channels, weight2.shape[0]
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), stride, padding
        self.rows = rows
        self.weight = Parameter(weight2)
        self.bias = Parameter(bias) if bias is not None else None

    def forward(self, x):
        _check_image(self, x, self.in_channels)
        return ops.conv2d_gathered(x, self.weight, self.rows, self.kernel_size, self.bias,
                                   self.stride, self.padding)

    def __repr__(self):
        total = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return (f"GatheredConv2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, columns={len(self.rows)}/{total}, "
                f"stride={self.stride}, padding={self.padding})")


class Take(Module):
    """Keep the listed entries of axis 1 (input pixels or channels): what a compacted model
    does first, so that it takes the same input as the original. Shapes: (B, F, *S) ->
    (B, len(indices), *S)."""

    def __init__(self, indices):
        super().__init__()
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or len(np.unique(self.indices)) != len(self.indices):
            raise ValueError("Take needs a 1-D array of unique indices")
        if len(self.indices) and self.indices.min() < 0:
            raise ValueError("Take needs non-negative indices")
        self.needed = int(self.indices.max()) + 1 if len(self.indices) else 0

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] < self.needed:
            raise ValueError(f"{self!r} expects an input with at least {self.needed} entries "
                             f"on axis 1, got {x.shape}")
        # the indices were checked once above, so skip ops.take's per-call uniqueness check
        return TakeFunction.apply(x, indices=xp_of(x.data).asarray(self.indices))

    def __repr__(self):
        return f"Take({len(self.indices)} entries)"


class MaxPool2d(Module):
    """Max pooling. Shapes: (B, C, H, W) -> (B, C, OH, OW); see ops.max_pool2d."""

    def __init__(self, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.ceil_mode = kernel_size, ceil_mode
        self.stride = kernel_size if stride is None else stride

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.ceil_mode)

    def __repr__(self):
        return f"MaxPool2d({self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode})"


class AvgPool2d(MaxPool2d):
    """Average pooling. Shapes: (B, C, H, W) -> (B, C, OH, OW); see ops.avg_pool2d."""

    def forward(self, x):
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.ceil_mode)

    def __repr__(self):
        return f"AvgPool2d({self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode})"


class GlobalAvgPool2d(Module):
    """Mean of each feature map. Shapes: (B, C, H, W) -> (B, C)."""

    def forward(self, x):
        return ops.global_avg_pool2d(x)

    def __repr__(self):
        return "GlobalAvgPool2d()"


class BatchNorm2d(Module):
    """Batch normalization per channel (see ops.batch_norm).

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters weight (gamma, starts at 1) and bias
    (beta, starts at 0), both (C,); buffers running_mean and running_var (C,), updated in
    training mode and used in eval mode.
    """

    def __init__(self, channels, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        if channels < 1:
            raise ValueError(f"BatchNorm2d needs a positive channel count, got {channels}")
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.weight = Parameter(np.ones(channels, dtype=dtype))
        self.bias = Parameter(np.zeros(channels, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(channels, dtype=dtype))
        self.register_buffer("running_var", np.ones(channels, dtype=dtype))

    def forward(self, x):
        _check_image(self, x, self.channels)
        return ops.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                              self.training, self.momentum, self.eps)

    def __repr__(self):
        return f"BatchNorm2d({self.channels})"


class Dropout(Module):
    """Inverted dropout with its own seeded Generator. Shapes: (*S) -> (*S)."""

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, np.random.default_rng(seed)

    def forward(self, x):
        return ops.dropout(x, self.p, self.rng, self.training)

    def __repr__(self):
        return f"Dropout(p={self.p})"
