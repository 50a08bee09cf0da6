"""Reference kernels: short, plainly correct array code, the oracle for every other variant.

Each function here has a Numba twin of the same name and signature in `numba_cpu.py`.
The code is written against `xp = xp_of(x)`, so the same lines run on NumPy and CuPy
arrays (the "cupy" backend uses them as its kernels). Kernels only compute: inputs are
validated, cast and made contiguous by `kernels/__init__.py`.

Index conventions (docs/shapes.md):
    image x            (B, C, H, W)
    patch matrix cols  (C*KH*KW, B*OH*OW); row (c, kh, kw), column (b, oh, ow), so that
                       W.reshape(C_out, C*KH*KW) @ cols is the convolution (Caffe's layout:
                       each row is a shifted copy of the image, read and written in runs).
    pooling argmax     (B, C, OH, OW) int32: index kh*KW + kw of the maximum in its window.

Pooling windows may hang over the bottom/right border (Caffe's ceil mode); the part
outside the image is ignored: max skips it, average divides by the window's inside area.
"""

import numpy as np

from minissl.backend import xp_of


def _window_slice(offset, stride, count):
    """Slice picking `count` positions start, start+stride, ... for one window offset."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def im2col(x, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
    """Unfold zero-padded image patches into the columns of a matrix.

    Shapes: x (B, C, H, W) -> cols (C*KH*KW, B*OH*OW), overwritten and returned.
    """
    xp = xp_of(x)
    batch, channels = x.shape[:2]
    padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    patches = cols.reshape(channels, kernel_h, kernel_w, batch, out_h, out_w)  # a view
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            rows, cols_ = _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)
            # (B, C, OH, OW) -> (C, B, OH, OW)
            patches[:, kh, kw] = padded[:, :, rows, cols_].transpose(1, 0, 2, 3)
    return cols


def col2im(cols, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Fold patch columns back into an image, summing where patches overlap (im2col's adjoint).

    Shapes: cols (C*KH*KW, B*OH*OW) -> x (B, C, H, W), overwritten and returned.
    """
    xp = xp_of(cols)
    batch, channels, height, width = x.shape
    patches = cols.reshape(channels, kernel_h, kernel_w, batch, out_h, out_w)
    padded = xp.zeros((batch, channels, height + 2 * padding, width + 2 * padding),
                      dtype=cols.dtype)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            rows, cols_ = _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)
            # one window offset touches each padded pixel at most once, so += is safe
            padded[:, :, rows, cols_] += patches[:, kh, kw].transpose(1, 0, 2, 3)
    x[...] = padded[:, :, padding:padding + height, padding:padding + width]
    return x


def gathered_im2col(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
    """Only the patch rows listed in `rows` (shape-compacted convolution).

    Shapes: x (B, C, H, W), rows (R,) int64 indices of (c, kh, kw) -> cols (R, B*OH*OW),
    overwritten and returned.
    """
    xp = xp_of(x)
    full = xp.empty((x.shape[1] * kernel_h * kernel_w, cols.shape[1]), dtype=x.dtype)
    cols[...] = im2col(x, kernel_h, kernel_w, stride, padding, out_h, out_w, full)[rows]
    return cols


def gathered_col2im(cols, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Adjoint of gathered_im2col: scatter the rows back, then fold.

    Shapes: cols (R, B*OH*OW), rows (R,) -> x (B, C, H, W), overwritten and returned.
    """
    xp = xp_of(cols)
    full = xp.zeros((x.shape[1] * kernel_h * kernel_w, cols.shape[1]), dtype=cols.dtype)
    full[rows] = cols
    return col2im(full, kernel_h, kernel_w, stride, padding, out_h, out_w, x)


# The Numba variants have serial twins for worker threads that each take a chunk of images
# (minissl.workers); here one loop nest serves both.
gathered_im2col_serial = gathered_im2col
gathered_col2im_serial = gathered_col2im


def _padded_for_pool(x, kernel, stride, out_h, out_w, fill):
    """Pad x on the bottom/right with `fill` so that every window fits (ceil mode)."""
    xp = xp_of(x)
    need_h = (out_h - 1) * stride + kernel - x.shape[2]
    need_w = (out_w - 1) * stride + kernel - x.shape[3]
    return xp.pad(x, ((0, 0), (0, 0), (0, max(need_h, 0)), (0, max(need_w, 0))),
                  constant_values=fill)


def max_pool2d(x, kernel, stride, out_h, out_w):
    """Max over each kernel x kernel window.

    Shapes: x (B, C, H, W) -> out (B, C, OH, OW), argmax (B, C, OH, OW) int32.
    Ties go to the first maximum in row-major window order; a window with a NaN gives NaN.
    """
    xp = xp_of(x)
    padded = _padded_for_pool(x, kernel, stride, out_h, out_w, -np.inf)
    out = xp.full(x.shape[:2] + (out_h, out_w), -np.inf, dtype=x.dtype)
    argmax = xp.zeros(out.shape, dtype=np.int32)
    for kh in range(kernel):
        for kw in range(kernel):
            rows, cols = _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)
            window = padded[:, :, rows, cols]
            # strict: the first maximum wins ties; a NaN always wins (it propagates, as in
            # PyTorch), so the last NaN of a window is its argmax
            larger = (window > out) | xp.isnan(window)
            out = xp.where(larger, window, out)
            argmax[larger] = kh * kernel + kw
    return out, argmax


def max_pool2d_backward(grad_out, argmax, height, width, kernel, stride):
    """Route each output gradient to the input pixel that was the maximum.

    Shapes: grad_out, argmax (B, C, OH, OW) -> grad_x (B, C, H, W).
    """
    xp = xp_of(grad_out)
    out_h, out_w = grad_out.shape[2:]
    full_h, full_w = (out_h - 1) * stride + kernel, (out_w - 1) * stride + kernel
    grad = xp.zeros(grad_out.shape[:2] + (max(full_h, height), max(full_w, width)),
                    dtype=grad_out.dtype)
    for kh in range(kernel):
        for kw in range(kernel):
            chosen = xp.where(argmax == kh * kernel + kw, grad_out, 0)
            grad[:, :, _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)] += chosen
    return grad[:, :, :height, :width]


def _window_areas(height, width, kernel, stride, out_h, out_w, dtype, xp):
    """Number of in-image pixels of each pooling window. Shapes: -> (OH, OW)."""
    rows = np.minimum(np.arange(out_h) * stride + kernel, height) - np.arange(out_h) * stride
    cols = np.minimum(np.arange(out_w) * stride + kernel, width) - np.arange(out_w) * stride
    return xp.asarray(np.outer(rows, cols).astype(dtype))


def avg_pool2d(x, kernel, stride, out_h, out_w):
    """Mean over the in-image part of each kernel x kernel window.

    Shapes: x (B, C, H, W) -> (B, C, OH, OW).
    """
    xp = xp_of(x)
    padded = _padded_for_pool(x, kernel, stride, out_h, out_w, 0)
    total = xp.zeros(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for kh in range(kernel):
        for kw in range(kernel):
            rows, cols = _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)
            total += padded[:, :, rows, cols]
    return total / _window_areas(x.shape[2], x.shape[3], kernel, stride, out_h, out_w, x.dtype, xp)


def avg_pool2d_backward(grad_out, height, width, kernel, stride):
    """Spread each output gradient evenly over its window's in-image pixels.

    Shapes: grad_out (B, C, OH, OW) -> grad_x (B, C, H, W).
    """
    xp = xp_of(grad_out)
    out_h, out_w = grad_out.shape[2:]
    share = grad_out / _window_areas(height, width, kernel, stride, out_h, out_w,
                                     grad_out.dtype, xp)
    full_h, full_w = (out_h - 1) * stride + kernel, (out_w - 1) * stride + kernel
    grad = xp.zeros(grad_out.shape[:2] + (max(full_h, height), max(full_w, width)),
                    dtype=grad_out.dtype)
    for kh in range(kernel):
        for kw in range(kernel):
            grad[:, :, _window_slice(kh, stride, out_h), _window_slice(kw, stride, out_w)] += share
    return grad[:, :, :height, :width]


def gemm(a, b):
    """Matrix product. Shapes: a (M, K), b (K, N) -> (M, N). Here: the array module's BLAS."""
    return a @ b


def batch_norm_forward(x, gamma, beta, eps):
    """Normalize each channel with its batch statistics, then scale and shift.

    Shapes: x (B, C, H, W), gamma, beta (C,) -> y (B, C, H, W), mean (C,), var (C,)
    (var biased: the mean of squared deviations over the B*H*W values of a channel).
    """
    xp = xp_of(x)
    mean = x.mean(axis=(0, 2, 3))  # (C,)
    centered = x - mean.reshape(1, -1, 1, 1)
    var = (centered * centered).mean(axis=(0, 2, 3))  # (C,)
    scale = gamma / xp.sqrt(var + eps)  # (C,)
    return centered * scale.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1), mean, var


def batch_norm_backward(grad_out, x, mean, inv_std, gamma):
    """Gradient of batch_norm_forward (see ops/norm.py for the formula).

    Shapes: grad_out, x (B, C, H, W); mean, inv_std, gamma (C,)
    -> grad_x (B, C, H, W), grad_gamma (C,), grad_beta (C,).
    """
    count = x.size // x.shape[1]
    x_hat = (x - mean.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1)
    grad_gamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
    grad_beta = grad_out.sum(axis=(0, 2, 3))
    scale = (gamma * inv_std).reshape(1, -1, 1, 1)
    grad_x = scale * (grad_out - (grad_beta / count).reshape(1, -1, 1, 1)
                      - x_hat * (grad_gamma / count).reshape(1, -1, 1, 1))
    return grad_x, grad_gamma, grad_beta


def channel_affine(x, scale, shift):
    """y = x * scale[c] + shift[c] per channel: batch normalization with fixed statistics
    (scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale).

    Shapes: x (B, C, H, W), scale, shift (C,) -> y (B, C, H, W).
    """
    return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def relu_forward(x):
    """max(x, 0), elementwise; NaN stays NaN. Shapes: x (any) -> the same shape."""
    return xp_of(x).maximum(x, 0)


def relu_backward(grad_out, out):
    """Gradient of max(x, 0) from its output: grad_out where out > 0, else 0 (also at the
    kink x == 0, PyTorch's choice). Shapes: grad_out, out (any, equal) -> the same shape."""
    return grad_out * (out > 0)


def conv_tiles(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, runs, out):
    """Convolution for inference: out = W2 @ gathered_im2col(x) + bias, laid out per image.

    Shapes: x (B, C, H, W), weight2 (N, R), rows (R,) int64 indices of (c, kh, kw), bias (N,)
    -> out (B, N, OH, OW), overwritten and returned. (The Numba twin computes the same one
    image at a time, from tiles that stay in cache, in `runs` runs of images; unused here.)
    """
    xp = xp_of(x)
    batch, filters, out_h, out_w = out.shape
    cols = xp.empty((len(rows), batch * out_h * out_w), dtype=x.dtype)
    gathered_im2col(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols)
    product = (weight2 @ cols).reshape(filters, batch, out_h, out_w)  # (N, B, OH, OW)
    out[...] = product.transpose(1, 0, 2, 3) + bias[None, :, None, None]
    return out


def conv_shifted(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, threads, out):
    """Inference convolution from shifted runs of each image's phase planes.

    Shapes: x (B, C, H, W), weight2 (N, R), rows (R,) int64 indices of (c, kh, kw), bias (N,)
    -> out (B, N, OH, OW), overwritten and returned. The padded image is split into s*s
    phase planes (c, h % s, w % s) of H' x W' pixels (h // s, w // s); on output rows as wide
    as a plane (W'), patch row (c, kh, kw) of the output pixels oh*W' + ow is the run of the
    flattened planes starting at plane (c, kh % s, kw % s), pixel (kh // s, kw // s). The
    product is taken on those runs and the W'-OW wrapped-around columns of every output row
    dropped. (`threads`: the Numba twin's thread count; unused here.)
    """
    xp = xp_of(x)
    batch, filters, out_h, out_w = out.shape
    channels = x.shape[1]
    height = -(-(x.shape[2] + 2 * padding) // stride)  # H', W'
    width = -(-(x.shape[3] + 2 * padding) // stride)
    padded = xp.pad(x, ((0, 0), (0, 0),
                        (padding, height * stride - x.shape[2] - padding),
                        (padding, width * stride - x.shape[3] - padding)))
    phases = padded.reshape(batch, channels, height, stride, width, stride)
    phases = phases.transpose(0, 1, 3, 5, 2, 4).reshape(batch, -1)  # (B, C*s*s*H'*W')
    c, kh, kw = rows // (kernel_h * kernel_w), rows // kernel_w % kernel_h, rows % kernel_w
    phase = (c * stride + kh % stride) * stride + kw % stride
    starts = phase * (height * width) + (kh // stride) * width + kw // stride
    span = (out_h - 1) * width + out_w
    runs_of_pixels = phases[:, starts[:, None] + xp.arange(span)]  # (B, R, span)
    wide = xp.einsum("nr,brs->bns", weight2, runs_of_pixels) + bias[None, :, None]
    wide = xp.concatenate([wide, xp.zeros((batch, filters, width - out_w), wide.dtype)], axis=2)
    out[...] = wide.reshape(batch, filters, out_h, width)[..., :out_w]
    return out
