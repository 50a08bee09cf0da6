"""Kernel dispatch: validate once, then run the reference, Numba or CuPy variant.

Every kernel exists as a plain array version (`reference.py`, also used for CuPy arrays)
and a Numba twin with the same name and signature: the textbook kernels in `numba_cpu.py`,
the inference-only convolutions in `numba_inference.py`. Which convolution path runs is
decided in `choice.py`. This module owns
everything the kernels leave out: argument checks with clear errors, output sizes,
dtype and contiguity, and the choice of variant from `minissl.get_backend()`:

    backend "numpy"  -> reference          backend "numba" -> numba_cpu
    CuPy arrays      -> reference (the same lines run on the GPU through CuPy)

Which GEMM runs where (`python -m benchmarks.kernels`, its GEMM table in docs/journal.md,
2 cores, float32): NumPy's OpenBLAS sgemm reached 124-182 GFLOP/s on squares of 256-2048;
our Numba `gemm` 0.47-0.76x of that there, and 0.30-0.61x on the MLP and LeNet layer
products. BLAS was faster on every shape, so `matmul` (what the ops call) is BLAS; `gemm`
is the readable, tested Numba kernel that `benchmarks/kernels.py` measures against it.
"""

import numba
import numpy as np

from minissl.backend import get_backend, xp_of
from minissl.kernels import numba_cpu, numba_inference, reference
from minissl.kernels.choice import ALGORITHMS, conv_algorithm, explain  # noqa: F401 (public)

FLOAT_DTYPES = (np.float32, np.float64)


def _variant(array):
    """The module whose kernels should run on `array` under the current backend."""
    if xp_of(array) is not np or get_backend() != "numba":
        return reference
    return numba_cpu


def _inference_variant(array):
    """The module of the inference convolutions for `array`: numba_inference or reference."""
    return numba_inference if _variant(array) is numba_cpu else reference


def _check_float(name, array, ndim):
    """Raise a clear error unless `array` is a float32/float64 array with `ndim` axes."""
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(array.shape)}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")


def _check_positive(**values):
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis: floor((size + 2p - k) / s) + 1.

    Raises ValueError when the padded input is smaller than the kernel.
    """
    _check_positive(kernel=kernel, stride=stride)
    if padding < 0 or int(padding) != padding:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if size + 2 * padding < kernel:
        raise ValueError(f"kernel {kernel} is larger than the padded input {size}+2*{padding}")
    return (size + 2 * padding - kernel) // stride + 1


def pool_output_size(size, kernel, stride, ceil_mode):
    """Output length of a pooling window along one axis (no padding).

    ceil_mode=True is Caffe's rule: ceil((size - k) / s) + 1, with the last window
    starting inside the input. Raises ValueError when the input is smaller than the kernel.
    """
    _check_positive(kernel=kernel, stride=stride)
    if size < kernel:
        raise ValueError(f"pooling window {kernel} is larger than the input {size}")
    if not ceil_mode:
        return (size - kernel) // stride + 1
    out = -(-(size - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= size else out


def _check_rows(rows, count):
    """Validate shape-column indices: int64, unique, increasing, within [0, count)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or rows.size == 0:
        raise ValueError(f"rows must be a non-empty 1-D index array, got shape {rows.shape}")
    if not numba_cpu.increasing_within(rows, count):
        raise ValueError(f"rows must be increasing indices in [0, {count}), got {rows.tolist()}")
    return rows


def _check_out(name, out, shape, dtype):
    """Raise a clear error unless `out` is a C-contiguous array of `shape` and `dtype`."""
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{name} must be a {dtype} array of shape {tuple(shape)}, "
                         f"got {out.dtype} {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def im2col(x, kernel_h, kernel_w, stride=1, padding=0, rows=None, out=None, serial=False):
    """Unfold image patches into the columns of a matrix for convolution as a GEMM.

    Shapes: x (B, C, H, W) -> (C*KH*KW, B*OH*OW); row (c, kh, kw), column (b, oh, ow).
    With `rows` (increasing indices of (c, kh, kw) rows), only those rows: (R, B*OH*OW),
    the gathered im2col of a shape-compacted convolution. `out`, when given, is a
    C-contiguous array of that shape and x's dtype that is overwritten and returned (the
    convolution reuses one buffer instead of allocating and page-faulting a new one).
    serial=True runs on the calling thread alone, without the GIL (for worker threads that
    each unfold their own chunk of images, minissl.workers). Raises ValueError/TypeError
    for a wrong rank, dtype, rows, out, or a kernel larger than the input.
    """
    _check_float("im2col input", x, 4)
    out_h = conv_output_size(x.shape[2], kernel_h, stride, padding)
    out_w = conv_output_size(x.shape[3], kernel_w, stride, padding)
    xp = xp_of(x)
    x = xp.ascontiguousarray(x)
    if rows is not None:
        rows = _check_rows(rows, x.shape[1] * kernel_h * kernel_w)
    shape = (x.shape[1] * kernel_h * kernel_w if rows is None else len(rows),
             x.shape[0] * out_h * out_w)
    if out is None:
        out = xp.empty(shape, dtype=x.dtype)
    else:
        _check_out("im2col out", out, shape, x.dtype)
    geometry = (kernel_h, kernel_w, stride, padding, out_h, out_w)
    if serial:
        rows = np.arange(shape[0]) if rows is None else rows
        return _variant(x).gathered_im2col_serial(x, xp.asarray(rows), *geometry, out)
    if rows is None:
        return _variant(x).im2col(x, *geometry, out)
    return _variant(x).gathered_im2col(x, xp.asarray(rows), *geometry, out)


def col2im(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0, rows=None, out=None,
           serial=False):
    """Fold patch columns back into an image, summing overlaps (the adjoint of im2col).

    Shapes: cols (C*KH*KW, B*OH*OW) -> (B, C, H, W) with (B, C, H, W) = x_shape; with
    `rows`, cols is (R, B*OH*OW) and holds only those rows (the adjoint of the gathered
    im2col). `out`, when given, is a C-contiguous array of x_shape that is overwritten.
    serial=True runs on the calling thread alone, as in im2col.
    """
    _check_float("col2im input", cols, 2)
    batch, channels, height, width = (int(size) for size in x_shape)
    out_h = conv_output_size(height, kernel_h, stride, padding)
    out_w = conv_output_size(width, kernel_w, stride, padding)
    count = channels * kernel_h * kernel_w
    if rows is not None:
        rows = _check_rows(rows, count)
    expected = (count if rows is None else len(rows), batch * out_h * out_w)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im expects cols of shape {expected} for image {tuple(x_shape)}, "
                         f"got {tuple(cols.shape)}")
    xp = xp_of(cols)
    cols = xp.ascontiguousarray(cols)
    if out is None:
        out = xp.empty((batch, channels, height, width), dtype=cols.dtype)
    else:
        _check_out("col2im out", out, (batch, channels, height, width), cols.dtype)
    geometry = (kernel_h, kernel_w, stride, padding, out_h, out_w)
    if serial:
        rows = np.arange(count) if rows is None else rows
        return _variant(cols).gathered_col2im_serial(cols, xp.asarray(rows), *geometry, out)
    if rows is None:
        return _variant(cols).col2im(cols, *geometry, out)
    return _variant(cols).gathered_col2im(cols, xp.asarray(rows), *geometry, out)


def _inference_operands(name, x, weight2, kernel_h, kernel_w, stride, padding, rows, bias):
    """Checked, contiguous operands of conv_tiles / conv_shifted and their empty output."""
    _check_float(f"{name} input", x, 4)
    _check_float(f"{name} weight2", weight2, 2)
    if weight2.dtype != x.dtype:
        raise TypeError(f"{name}: x is {x.dtype} but weight2 is {weight2.dtype}")
    count = x.shape[1] * kernel_h * kernel_w
    rows = np.arange(count, dtype=np.int64) if rows is None else _check_rows(rows, count)
    if weight2.shape[1] != len(rows):
        raise ValueError(f"{name}: weight2 {tuple(weight2.shape)} must have one column per "
                         f"row ({len(rows)})")
    xp = xp_of(x)
    bias = xp.zeros(weight2.shape[0], dtype=x.dtype) if bias is None else bias
    if tuple(bias.shape) != (weight2.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight2.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    out_h = conv_output_size(x.shape[2], kernel_h, stride, padding)
    out_w = conv_output_size(x.shape[3], kernel_w, stride, padding)
    out = xp.empty((x.shape[0], weight2.shape[0], out_h, out_w), dtype=x.dtype)
    return (xp.ascontiguousarray(x), xp.ascontiguousarray(weight2), xp.asarray(rows),
            xp.ascontiguousarray(bias.astype(x.dtype, copy=False)), out)


def conv_tiles(x, weight2, kernel_h, kernel_w, stride=1, padding=0, rows=None, bias=None):
    """Convolution for inference, one image at a time from patch tiles kept in cache.

    Shapes: x (B, C, H, W), weight2 (N, R) with R = C*KH*KW or, with `rows` (increasing
    (c, kh, kw) indices), R = len(rows); bias (N,) or None -> (B, N, OH, OW). Computes what
    ops.conv2d / conv2d_gathered compute, without autograd. Raises ValueError/TypeError for a
    wrong rank, dtype, rows or weight shape.
    """
    x, weight2, rows, bias, out = _inference_operands("conv_tiles", x, weight2, kernel_h,
                                                      kernel_w, stride, padding, rows, bias)
    return _inference_variant(x).conv_tiles(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias,
                                  numba.get_num_threads(), out)


def conv_shifted(x, weight2, kernel_h, kernel_w, stride=1, padding=0, rows=None, bias=None):
    """Convolution for inference from shifted runs of each image (of its phase planes when
    strided or padded): no patch matrix and no patch tile at all (numba_inference.conv_shifted
    says how). Shapes and errors as conv_tiles.
    """
    x, weight2, rows, bias, out = _inference_operands("conv_shifted", x, weight2, kernel_h,
                                                      kernel_w, stride, padding, rows, bias)
    return _inference_variant(x).conv_shifted(x, weight2, rows, kernel_h, kernel_w, stride, padding,
                                    bias, numba.get_num_threads(), out)


def _pool_sizes(x, kernel, stride, ceil_mode):
    _check_float("pooling input", x, 4)
    stride = kernel if stride is None else stride
    out_h = pool_output_size(x.shape[2], kernel, stride, ceil_mode)
    out_w = pool_output_size(x.shape[3], kernel, stride, ceil_mode)
    return stride, out_h, out_w


def max_pool2d(x, kernel, stride=None, ceil_mode=False):
    """Max over kernel x kernel windows (stride defaults to kernel).

    Shapes: x (B, C, H, W) -> out (B, C, OH, OW), argmax (B, C, OH, OW) int32 (kh*K + kw).
    """
    stride, out_h, out_w = _pool_sizes(x, kernel, stride, ceil_mode)
    x = xp_of(x).ascontiguousarray(x)
    return _variant(x).max_pool2d(x, kernel, stride, out_h, out_w)


def max_pool2d_backward(grad_out, argmax, x_shape, kernel, stride=None):
    """Gradient of max_pool2d. Shapes: grad_out, argmax (B, C, OH, OW) -> (B, C, H, W)."""
    stride = kernel if stride is None else stride
    if grad_out.shape != argmax.shape:
        raise ValueError(f"grad_out {grad_out.shape} and argmax {argmax.shape} differ")
    grad_out = xp_of(grad_out).ascontiguousarray(grad_out)
    return xp_of(grad_out).ascontiguousarray(_variant(grad_out).max_pool2d_backward(
        grad_out, argmax, int(x_shape[2]), int(x_shape[3]), kernel, stride))


def avg_pool2d(x, kernel, stride=None, ceil_mode=False):
    """Mean over the in-image part of kernel x kernel windows.

    Shapes: x (B, C, H, W) -> (B, C, OH, OW).
    """
    stride, out_h, out_w = _pool_sizes(x, kernel, stride, ceil_mode)
    x = xp_of(x).ascontiguousarray(x)
    return _variant(x).avg_pool2d(x, kernel, stride, out_h, out_w)


def avg_pool2d_backward(grad_out, x_shape, kernel, stride=None):
    """Gradient of avg_pool2d. Shapes: grad_out (B, C, OH, OW) -> (B, C, H, W)."""
    stride = kernel if stride is None else stride
    grad_out = xp_of(grad_out).ascontiguousarray(grad_out)
    return xp_of(grad_out).ascontiguousarray(_variant(grad_out).avg_pool2d_backward(
        grad_out, int(x_shape[2]), int(x_shape[3]), kernel, stride))


def batch_norm_forward(x, gamma, beta, eps):
    """Training-mode batch normalization with the batch's own statistics.

    Shapes: x (B, C, H, W), gamma, beta (C,) -> y (B, C, H, W), mean (C,), var (C,) (biased
    variance). gamma and beta are cast to x's dtype.
    """
    _check_float("batch_norm input", x, 4)
    xp = xp_of(x)
    x = xp.ascontiguousarray(x)
    gamma, beta = (xp.ascontiguousarray(v, dtype=x.dtype) for v in (gamma, beta))
    return _variant(x).batch_norm_forward(x, gamma, beta, float(eps))


def batch_norm_backward(grad_out, x, mean, inv_std, gamma):
    """Gradient of batch_norm_forward. Shapes: grad_out, x (B, C, H, W); mean, inv_std,
    gamma (C,) -> grad_x (B, C, H, W), grad_gamma (C,), grad_beta (C,)."""
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out {grad_out.shape} and x {x.shape} differ")
    xp = xp_of(x)
    grad_out, x = xp.ascontiguousarray(grad_out), xp.ascontiguousarray(x)
    mean, inv_std, gamma = (xp.ascontiguousarray(v, dtype=x.dtype) for v in (mean, inv_std, gamma))
    return _variant(x).batch_norm_backward(grad_out, x, mean, inv_std, gamma)

def channel_affine(x, scale, shift):
    """x * scale[c] + shift[c] for every channel c: batch normalization with fixed
    statistics, in one pass. Shapes: x (B, C, H, W), scale, shift (C,) -> (B, C, H, W);
    scale and shift are cast to x's dtype."""
    _check_float("channel_affine input", x, 4)
    xp = xp_of(x)
    x = xp.ascontiguousarray(x)
    scale, shift = (xp.ascontiguousarray(v, dtype=x.dtype) for v in (scale, shift))
    if scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
        raise ValueError(f"scale {scale.shape} and shift {shift.shape} must be ({x.shape[1]},)")
    return _variant(x).channel_affine(x, scale, shift)


def relu_forward(x):
    """max(x, 0) elementwise (NaN stays NaN). Shapes: x (any) -> the same shape."""
    _check_float("relu input", x, x.ndim)
    x = xp_of(x).ascontiguousarray(x)
    return _variant(x).relu_forward(x)


def relu_backward(grad_out, out):
    """Gradient of relu from its output: grad_out where out > 0, else 0.

    Shapes: grad_out, out (any, equal) -> the same shape.
    """
    if grad_out.shape != out.shape or grad_out.dtype != out.dtype:
        raise ValueError(f"grad_out {grad_out.dtype} {grad_out.shape} and out {out.dtype} "
                         f"{out.shape} differ")
    xp = xp_of(out)
    return _variant(out).relu_backward(xp.ascontiguousarray(grad_out), xp.ascontiguousarray(out))


def gemm(a, b):
    """Matrix product with the current backend's own kernel (Numba or reference).

    Shapes: a (M, K), b (K, N) -> (M, N). Both operands must share a float dtype.
    """
    _check_float("gemm a", a, 2)
    _check_float("gemm b", b, 2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm shapes do not fit: {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"gemm operands must share a dtype, got {a.dtype} and {b.dtype}")
    xp = xp_of(a)
    return _variant(a).gemm(xp.ascontiguousarray(a), xp.ascontiguousarray(b))


def matmul(a, b):
    """The GEMM the ops use: BLAS (NumPy/cuBLAS), the fastest one measured (see above).

    Shapes: a (M, K), b (K, N) -> (M, N).
    """
    return a @ b
