"""Image layers: Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, BatchNorm2d, Dropout.

A conv weight is (C_out, C_in, KH, KW) (docs/design.md): row n of weight.reshape(C_out, -1) is
filter n, column (c, kh, kw) a shape fiber; SSL's filter, channel and shape groups are
views of it (minissl.ssl.groups). Each layer declares what it is to SSL and compaction
(minissl/nn/protocol.py).
"""

import numpy as np

from minissl import kernels, ops
from minissl.backend import to_numpy, xp_of
from minissl.ops.shape import Take as TakeFunction
from minissl.nn.init import INITIALIZERS
from minissl.nn.module import Channelwise, Module, Parameter
from minissl.nn.protocol import Role
from minissl.ssl.groups import GroupKind


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
        # inference path per batch size, when one was chosen by timing (kernels/choice.py)
        self.algorithms = {}

    def forward(self, x):
        return self.forward_with(x, self.algorithms.get(x.shape[0]))

    def forward_with(self, x, algorithm):
        """forward on the named inference path ("gemm", "tiles", "shifted"; None: the cost
        model), where it applies (kernels/choice.py)."""
        _check_image(self, x, self.in_channels)
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, algorithm)

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None})")

    # ---- the layer protocol (minissl/nn/protocol.py) --------------------------
    role = Role.WEIGHTS
    plan_kind = "conv"
    # SSL groups: filter W[n], channel W[:, c], shape fiber W[:, c, kh, kw]
    ssl_group_axes = {GroupKind.FILTER: (0,), GroupKind.CHANNEL: (1,), GroupKind.SHAPE: (1, 2, 3)}
    gathers_columns = True  # zero (c, kh, kw) columns of W2 go: a GatheredConv2d

    def sample_shape(self, shape):
        return _conv_sample_shape(self, shape)

    def input_mismatch(self, shape):
        return None if len(shape) == 3 and shape[0] == self.in_channels else (
            f"{self.in_channels} channels")

    def weight_by_channel(self, features_per_channel):
        """W (NumPy) as (N, C, KH*KW): filter, input channel, tap."""
        weight = to_numpy(self.weight.data)
        return weight.reshape(weight.shape[0], weight.shape[1], -1)

    def input_entries(self, channels, taps):
        """Kept entries of the input's axis 1: the kept channels (taps are inside one)."""
        return channels

    def compacted_shape(self, rows, channels, width, gathered):
        """(N', R) of a GatheredConv2d on `width` columns, else (N', C', KH, KW)."""
        return [rows, width] if gathered else [rows, channels, *self.kernel_size]

    def flops(self, out_shape, rows, columns):
        """FLOPs per sample: a (rows, columns) GEMM weight applied at every output pixel."""
        return 2 * rows * columns * out_shape[1] * out_shape[2]

    def compacted(self, name, plan):
        """A Conv2d on the kept filters and channels, or a GatheredConv2d on the kept columns."""
        layer_plan = plan.layer(name)
        weight = to_numpy(self.weight.data)
        kept_out, kept_in = np.asarray(layer_plan.kept_out), np.asarray(layer_plan.kept_in)
        bias = to_numpy(self.bias.data)[kept_out].copy() if self.bias is not None else None
        if layer_plan.kept_columns is None:
            layer = Conv2d(len(kept_in), len(kept_out), self.kernel_size, self.stride,
                           self.padding, bias=bias is not None, dtype=weight.dtype)
            layer.weight = Parameter(weight[kept_out][:, kept_in].copy())
            if bias is not None:
                layer.bias = Parameter(bias)
            return layer
        columns = np.asarray(layer_plan.kept_columns)
        window = weight.shape[2] * weight.shape[3]
        # original column c*KH*KW + k -> (position of c among the kept channels)*KH*KW + k
        position = np.searchsorted(kept_in, columns // window)
        rows = position * window + columns % window
        weight2 = weight.reshape(weight.shape[0], -1)[kept_out][:, columns].copy()  # (N', R)
        return GatheredConv2d(weight2, rows, len(kept_in), self.kernel_size, self.stride,
                              self.padding, bias)

    def gemm_operands(self, x):
        """(W2, patches): matmul of the two is this layer's product.
        Shapes: (C_out, C_in*KH*KW), (C_in*KH*KW, B*OH*OW)."""
        return _conv_gemm_operands(self, x, rows=None)

    def csr_forward(self, csr, x):
        """The layer with W2 in scipy CSR form `csr`, multiplying the im2col patch matrix."""
        (kernel_h, kernel_w), stride, padding = self.kernel_size, self.stride, self.padding
        images = to_numpy(x.data)
        cols = kernels.im2col(images, kernel_h, kernel_w, stride, padding)  # (C*KH*KW, B*OH*OW)
        out = csr @ cols  # (C_out, B*OH*OW)
        if self.bias is not None:
            out += to_numpy(self.bias.data)[:, None]
        batch = images.shape[0]
        return np.ascontiguousarray(out.reshape(out.shape[0], batch, -1).transpose(1, 0, 2))


def _conv_sample_shape(layer, shape):
    """(C_out, OH, OW) of a Conv2d or GatheredConv2d for one (C_in, H, W) sample."""
    (kernel_h, kernel_w), stride, padding = layer.kernel_size, layer.stride, layer.padding
    return (layer.out_channels, kernels.conv_output_size(shape[1], kernel_h, stride, padding),
            kernels.conv_output_size(shape[2], kernel_w, stride, padding))


def _conv_gemm_operands(layer, x, rows):
    weight = layer.weight.data
    (kernel_h, kernel_w), stride, padding = layer.kernel_size, layer.stride, layer.padding
    patches = kernels.im2col(x.data, kernel_h, kernel_w, stride, padding, rows=rows)
    return weight.reshape(weight.shape[0], -1), patches


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
        self.algorithms = {}  # as Conv2d's

    def forward(self, x):
        return self.forward_with(x, self.algorithms.get(x.shape[0]))

    def forward_with(self, x, algorithm):
        """forward on the named inference path (as Conv2d.forward_with)."""
        _check_image(self, x, self.in_channels)
        return ops.conv2d_gathered(x, self.weight, self.rows, self.kernel_size, self.bias,
                                   self.stride, self.padding, algorithm)

    def __repr__(self):
        total = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return (f"GatheredConv2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, columns={len(self.rows)}/{total}, "
                f"stride={self.stride}, padding={self.padding})")

    # ---- the layer protocol: already compacted; timed like the Conv2d it came from
    role = Role.COMPACTED
    sample_shape = Conv2d.sample_shape      # the geometry of the Conv2d it came from
    input_mismatch = Conv2d.input_mismatch

    def gemm_operands(self, x):
        """(W2, gathered patches). Shapes: (C_out, R), (R, B*OH*OW)."""
        return _conv_gemm_operands(self, x, rows=self.rows)


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

    role = Role.COMPACTED  # what compaction puts first; never compacted again

    def sample_shape(self, shape):
        return (len(self.indices),) + tuple(shape[1:])


class MaxPool2d(Channelwise):
    """Max pooling. Shapes: (B, C, H, W) -> (B, C, OH, OW); see ops.max_pool2d."""

    maps_zero_to_zero = True  # the max (or mean) of zeros is 0

    def __init__(self, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        stride = kernel_size if stride is None else stride
        if not all(isinstance(value, int) and value >= 1 for value in (kernel_size, stride)):
            raise ValueError(f"{type(self).__name__} needs a kernel size and stride that are "
                             f"positive ints, got {kernel_size!r} and {stride!r}")
        self.kernel_size, self.ceil_mode, self.stride = kernel_size, ceil_mode, stride

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.ceil_mode)

    def sample_shape(self, shape):
        size = self.kernel_size, self.stride, self.ceil_mode
        return (shape[0], kernels.pool_output_size(shape[1], *size),
                kernels.pool_output_size(shape[2], *size))

    def __repr__(self):
        return f"MaxPool2d({self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode})"


class AvgPool2d(MaxPool2d):
    """Average pooling. Shapes: (B, C, H, W) -> (B, C, OH, OW); see ops.avg_pool2d."""

    def forward(self, x):
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.ceil_mode)

    def __repr__(self):
        return f"AvgPool2d({self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode})"


class GlobalAvgPool2d(Channelwise):
    """Mean of each feature map. Shapes: (B, C, H, W) -> (B, C)."""

    maps_zero_to_zero = True

    def sample_shape(self, shape):
        return (shape[0],)

    def forward(self, x):
        return ops.global_avg_pool2d(x)

    def __repr__(self):
        return "GlobalAvgPool2d()"


class BatchNorm2d(Channelwise):
    """Batch normalization per channel (see ops.batch_norm).

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters weight (gamma, starts at 1) and bias
    (beta, starts at 0), both (C,); buffers running_mean and running_var (C,), updated in
    training mode and used in eval mode.
    """

    def __init__(self, channels, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        if channels < 1:
            raise ValueError(f"BatchNorm2d needs a positive channel count, got {channels}")
        if not (0 <= momentum <= 1 and eps > 0):  # NaN fails both
            raise ValueError(f"BatchNorm2d needs momentum in [0, 1] and eps > 0, got momentum "
                             f"{momentum}, eps {eps}")
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

    # ---- the layer protocol: channelwise, with per-channel parameters and statistics
    plan_kind = "batch_norm"

    def zero_channels(self, zero):
        """In eval mode y = gamma (x - mean) / sqrt(var + eps) + beta: channel c is exactly zero
        when gamma and beta are (whatever x is), or when x is zero and beta = gamma*mean = 0.
        Shapes: zero (C,) bool -> (C,) bool."""
        gamma, beta = to_numpy(self.weight.data), to_numpy(self.bias.data)
        mean = to_numpy(self.running_mean)
        return ((gamma == 0) & (beta == 0)) | (zero & (beta == 0) & (gamma * mean == 0))

    def compacted(self, name, plan):
        """A BatchNorm2d over the kept channels: their scale, shift and running statistics."""
        kept = np.asarray(plan.layer(name).kept_out)
        norm = BatchNorm2d(len(kept), self.momentum, self.eps, dtype=self.weight.dtype)
        norm.weight = Parameter(to_numpy(self.weight.data)[kept].copy())
        norm.bias = Parameter(to_numpy(self.bias.data)[kept].copy())
        norm.running_mean[...] = to_numpy(self.running_mean)[kept]
        norm.running_var[...] = to_numpy(self.running_var)[kept]
        return norm


class Dropout(Channelwise):
    """Inverted dropout with its own seeded Generator. Shapes: (*S) -> (*S)."""

    maps_zero_to_zero = True

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, np.random.default_rng(seed)

    def forward(self, x):
        return ops.dropout(x, self.p, self.rng, self.training)

    def __repr__(self):
        return f"Dropout(p={self.p})"
