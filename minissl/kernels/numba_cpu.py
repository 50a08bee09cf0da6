"""Numba kernels: compiled twins of `reference.py`, same names, same signatures.

Every function here is checked against its reference twin on a hypothesis grid
(tests/test_kernels.py). They are plain loops a learner can read top to bottom; with
NUMBA_DISABLE_JIT=1 they run as ordinary Python and can be stepped through in a debugger.

Threading policy (measured, docs/journal.md): one `prange` per kernel, on its outermost
loop (images, patch rows, or GEMM tiles). OpenBLAS and Numba share the two cores; idle
threads of both sleep instead of spinning (see `minissl.backend`).
"""

import numpy as np
from numba import njit, prange
from numba.core import config as numba_config

U = np.uint64  # unsigned array offsets: no negative-index wraparound check in the loop

# GEMM blocking: a packed (GEMM_KC x GEMM_NC) panel of b (512 KB of float32) stays in the
# L2 cache while the GEMM_MC rows of a tile stream past it, four rows at a time.
GEMM_KC = 256
GEMM_NC = 512
GEMM_MC = 128

# conv_shifted splits an image's output rows over threads from this many multiply-adds per
# image (AlexNet's layers at batch 1); below it a second thread costs more than it saves.
SHIFTED_SPLIT_MACS = 2_000_000
# ... and sums over at most this many kept rows at a time, the partial sums parked in the
# output in between, so that the rows' weights (2 KB per four filters) and the planes they
# read stay in the L1 cache from chunk to chunk: AlexNet's conv5 with 10% of its 3456 rows
# kept (gathered from all 384 channels) went from 16.5 to 28 GMAC/s on one thread; dense
# layers were unchanged (128, 256 and 512 within 10% of each other)
SHIFTED_KC = 128


@njit(cache=True)
def increasing_within(rows, count):
    """True when rows (R,) are strictly increasing indices in [0, count): the check of
    kernels._check_rows, run on every call of a gathered kernel, in one pass."""
    if rows[0] < 0 or rows[rows.shape[0] - 1] >= count:
        return False
    for r in range(1, rows.shape[0]):
        if rows[r] <= rows[r - 1]:
            return False
    return True


@njit(cache=True)
def _inside_range(offset, stride, size, count):
    """Output positions o in [first, last) whose input o*stride + offset lies in [0, size)."""
    first = 0
    while first < count and first * stride + offset < 0:
        first += 1
    last = count
    while last > first and (last - 1) * stride + offset >= size:
        last -= 1
    return first, last


@njit(cache=True)
def _shifted_plane_copy(flat_x, plane, out, block, shift, pixels, out_w, first, last,
                        row_first, row_last):
    """One (image, patch row) block of a stride-1 im2col whose output is as wide as the image.

    Output pixel t = oh*W + ow reads input pixel t + shift of the same plane, so the whole
    block is one contiguous copy (a SIMD memcpy) instead of one short run per output row.
    The copy also fills the positions whose window lies over the padding with neighbouring
    pixels; those (columns outside [first, last), rows outside [row_first, row_last)) are
    then set to zero.
    """
    start, stop = max(0, -shift), min(pixels, pixels - shift)
    for t in range(0, start):
        out[block + U(t)] = 0
    for t in range(start, stop):
        out[block + U(t)] = flat_x[plane + U(t + shift)]
    for t in range(stop, pixels):
        out[block + U(t)] = 0
    for oh in range(row_first, row_last):
        for ow in range(first):
            out[block + U(oh * out_w + ow)] = 0
        for ow in range(last, out_w):
            out[block + U(oh * out_w + ow)] = 0
    for t in range(0, row_first * out_w):
        out[block + U(t)] = 0
    for t in range(row_last * out_w, pixels):
        out[block + U(t)] = 0


@njit(cache=True)
def _unfold_row(flat_x, row, shape, kernel_h, kernel_w, stride, padding, out_h, out_w, out):
    """Patch row `row` = (c, kh, kw) of every image into `out` (B*OH*OW,): channel c of each
    image, shifted by (kh, kw), zero where the window lies over the padding. The body of
    gathered_im2col; `shape` is x's (B, C, H, W) and flat_x the image flattened."""
    batch, channels, height, width = shape
    pixels = out_h * out_w
    same_size = stride == 1 and out_h == height and out_w == width
    c, kh, kw = row // (kernel_h * kernel_w), row // kernel_w % kernel_h, row % kernel_w
    first, last = _inside_range(kw - padding, stride, width, out_w)
    row_first, row_last = _inside_range(kh - padding, stride, height, out_h)
    for b in range(batch):
        block = U(b * pixels)
        plane = U((b * channels + c) * height * width)
        if same_size:
            _shifted_plane_copy(flat_x, plane, out, block, (kh - padding) * width + kw
                                - padding, pixels, out_w, first, last, row_first, row_last)
            continue
        for oh in range(out_h):
            start = block + U(oh * out_w)
            ih = oh * stride - padding + kh
            if oh < row_first or oh >= row_last:
                first_inside, last_inside = out_w, out_w  # the whole run is padding
            else:
                first_inside, last_inside = first, last
            for ow in range(first_inside):
                out[start + U(ow)] = 0
            for ow in range(last_inside, out_w):
                out[start + U(ow)] = 0
            # flat index of x[b, c, ih, ow * stride - padding + kw], minus ow * stride
            source = ((b * channels + c) * height + ih) * width + kw - padding
            for ow in range(first_inside, last_inside):
                out[start + U(ow)] = flat_x[U(source + ow * stride)]


@njit(parallel=True, cache=True)
def gathered_im2col(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
    """Unfold only the patch rows listed in `rows` into `cols` (see reference.gathered_im2col).

    Shapes: x (B, C, H, W), rows (R,) int64 -> cols (R, B*OH*OW), overwritten and returned.
    Row (c, kh, kw) is the image channel c shifted by (kh, kw). With stride 1 and an output
    as large as the input (3x3 pad 1, 5x5 pad 2: every CIFAR layer), each (image, row) block
    is one shifted copy (`_shifted_plane_copy`: im2col of a 16-channel CIFAR layer, both
    passes, 27.5 -> 14.5 ms in docs/journal.md, "What changed");
    otherwise it is written in runs along ow. Offsets are unsigned (`U`): Numba then skips
    its negative-index check. One thread per patch row.
    """
    flat_x = x.reshape(-1)
    for index in prange(rows.shape[0]):
        _unfold_row(flat_x, rows[index], x.shape, kernel_h, kernel_w, stride, padding, out_h,
                    out_w, cols[index])
    return cols


@njit(nogil=True, cache=True)
def gathered_im2col_serial(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
    """gathered_im2col on the calling thread alone, without holding the GIL: for worker
    threads that each unfold their own chunk of images (minissl.workers)."""
    flat_x = x.reshape(-1)
    for index in range(rows.shape[0]):
        _unfold_row(flat_x, rows[index], x.shape, kernel_h, kernel_w, stride, padding, out_h,
                    out_w, cols[index])
    return cols


@njit(cache=True)
def im2col(x, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
    """Unfold zero-padded image patches into the columns of `cols` (see reference.im2col).

    Shapes: x (B, C, H, W) -> cols (C*KH*KW, B*OH*OW): gathered_im2col with every row.
    """
    rows = np.arange(x.shape[1] * kernel_h * kernel_w)
    return gathered_im2col(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols)


@njit(cache=True)
def _fold_plane(cols, rows, plane, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Image plane `plane` = b * C + c of x: zeroed, then the sum of its patch rows in cols
    (those of channel c: a contiguous run of the increasing `rows`). The body of
    gathered_col2im; only this plane is written."""
    batch, channels, height, width = x.shape
    taps = kernel_h * kernel_w
    flat_x = x.reshape(-1)
    b, c = plane // channels, plane % channels
    base = plane * height * width
    for pixel in range(height * width):
        flat_x[U(base + pixel)] = 0
    first_row = np.searchsorted(rows, c * taps)
    last_row = np.searchsorted(rows, (c + 1) * taps)
    for index in range(first_row, last_row):
        row = rows[index]
        kh, kw = row // kernel_w % kernel_h, row % kernel_w
        first, last = _inside_range(kw - padding, stride, width, out_w)
        patch_row = cols[index]
        for oh in range(out_h):
            ih = oh * stride - padding + kh
            if ih < 0 or ih >= height:
                continue
            start = U((b * out_h + oh) * out_w)
            target = base + ih * width + kw - padding
            if stride == 1:  # a contiguous run: its own loop, so that LLVM vectorizes it
                for ow in range(first, last):
                    flat_x[U(target + ow)] += patch_row[start + U(ow)]
            else:
                for ow in range(first, last):
                    flat_x[U(target + ow * stride)] += patch_row[start + U(ow)]


@njit(parallel=True, cache=True)
def gathered_col2im(cols, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Fold the listed patch rows back into the image `x`, summing overlaps (see reference).

    Shapes: cols (R, B*OH*OW), rows (R,) increasing int64 -> x (B, C, H, W), overwritten
    and returned. One thread per (image, channel) plane: only the rows of channel c (a
    contiguous run of the increasing `rows`) write into it, so no two threads share a pixel.
    """
    for plane in prange(x.shape[0] * x.shape[1]):
        _fold_plane(cols, rows, plane, kernel_h, kernel_w, stride, padding, out_h, out_w, x)
    return x


@njit(nogil=True, cache=True)
def gathered_col2im_serial(cols, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """gathered_col2im on the calling thread alone, without holding the GIL (see
    gathered_im2col_serial)."""
    for plane in range(x.shape[0] * x.shape[1]):
        _fold_plane(cols, rows, plane, kernel_h, kernel_w, stride, padding, out_h, out_w, x)
    return x


@njit(cache=True)
def col2im(cols, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Fold patch columns back into the image `x`, summing overlaps (see reference.col2im).

    Shapes: cols (C*KH*KW, B*OH*OW) -> x (B, C, H, W): gathered_col2im with every row.
    """
    rows = np.arange(x.shape[1] * kernel_h * kernel_w)
    return gathered_col2im(cols, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, x)


@njit(cache=True)
def _column_phases(plane, stride, phases):
    """phases (H, stride, span)[r, p, j] = plane[r, j*stride + p], -inf past the right edge.

    Window column kw of output column ow is plane[., ow*stride + kw] = phases[., kw % stride,
    ow + kw // stride]: split into phases, every window column is a contiguous run, so the
    compare loops below run on whole vectors instead of strided gathers.
    """
    width, span = plane.shape[1], phases.shape[2]
    for r in range(plane.shape[0]):
        for p in range(stride):
            for j in range(span):
                column = j * stride + p
                phases[r, p, j] = plane[r, column] if column < width else -np.inf


@njit(parallel=True, cache=True)
def max_pool2d(x, kernel, stride, out_h, out_w):
    """Max over each window, ties to the first, a NaN to the last NaN (see reference).

    Shapes: x (B, C, H, W) -> out (B, C, OH, OW), argmax (B, C, OH, OW) int32 (kh*K + kw).
    One thread per image. Each plane is first split into column phases (`_column_phases`);
    then for each output row the window positions are visited in row-major order and a whole
    row of running maxima and their positions is updated with selects, no branch. With
    strided reads instead (one window at a time, or a second pass to find the position) the
    ConvNet's pool took 34 ms instead of 9 (docs/performance.md). A position past the
    right edge reads -inf, which never replaces a maximum (every window starts in the image).
    """
    batch, channels, height, width = x.shape
    out = np.empty((batch, channels, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((batch, channels, out_h, out_w), dtype=np.int32)
    span = out_w + (kernel - 1) // stride
    for b in prange(batch):
        phases = np.empty((height, stride, span), dtype=x.dtype)
        for c in range(channels):
            _column_phases(x[b, c], stride, phases)
            for oh in range(out_h):
                top = oh * stride
                best, code = out[b, c, oh], argmax[b, c, oh]
                best[:] = phases[top, 0, :out_w]  # position (0, 0)
                code[:] = 0
                for kh in range(min(kernel, height - top)):
                    for kw in range(kernel):
                        if kh == 0 and kw == 0:
                            continue
                        source, shift = phases[top + kh, kw % stride], kw // stride
                        position = np.int32(kh * kernel + kw)
                        for ow in range(out_w):
                            value, old = source[ow + shift], best[ow]
                            larger = (value > old) | (value != value)  # a NaN always wins
                            best[ow] = value if larger else old
                            code[ow] = position if larger else code[ow]
    return out, argmax


@njit(parallel=True, cache=True)
def max_pool2d_backward(grad_out, argmax, height, width, kernel, stride):
    """Route each output gradient to its window's maximum (see reference).

    Shapes: grad_out, argmax (B, C, OH, OW) -> grad_x (B, C, H, W).
    """
    batch, channels, out_h, out_w = grad_out.shape
    grad = np.zeros((batch, channels, height, width), dtype=grad_out.dtype)
    flat_grad, flat_out, flat_arg = grad.reshape(-1), grad_out.reshape(-1), argmax.reshape(-1)
    for b in prange(batch):
        for c in range(channels):
            plane = U((b * channels + c) * height * width)
            result = U((b * channels + c) * out_h * out_w)
            for oh in range(out_h):
                for ow in range(out_w):
                    kh, kw = divmod(flat_arg[result + U(oh * out_w + ow)], kernel)
                    pixel = plane + U((oh * stride + kh) * width + ow * stride + kw)
                    flat_grad[pixel] += flat_out[result + U(oh * out_w + ow)]
    return grad


@njit(parallel=True, cache=True)
def avg_pool2d(x, kernel, stride, out_h, out_w):
    """Mean over the in-image part of each window (see reference.avg_pool2d).

    Shapes: x (B, C, H, W) -> (B, C, OH, OW).
    """
    batch, channels, height, width = x.shape
    out = np.empty((batch, channels, out_h, out_w), dtype=x.dtype)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for b in prange(batch):
        for c in range(channels):
            plane = U((b * channels + c) * height * width)
            result = U((b * channels + c) * out_h * out_w)
            for oh in range(out_h):
                rows = min(kernel, height - oh * stride)
                for ow in range(out_w):
                    cols = min(kernel, width - ow * stride)
                    corner = plane + U(oh * stride * width + ow * stride)
                    total = flat_x[corner] * 0
                    for kh in range(rows):
                        for kw in range(cols):
                            total += flat_x[corner + U(kh * width + kw)]
                    flat_out[result + U(oh * out_w + ow)] = total / (rows * cols)
    return out


@njit(parallel=True, cache=True)
def avg_pool2d_backward(grad_out, height, width, kernel, stride):
    """Spread each output gradient over its window's in-image pixels (see reference).

    Shapes: grad_out (B, C, OH, OW) -> grad_x (B, C, H, W).
    """
    batch, channels, out_h, out_w = grad_out.shape
    grad = np.zeros((batch, channels, height, width), dtype=grad_out.dtype)
    flat_grad, flat_out = grad.reshape(-1), grad_out.reshape(-1)
    for b in prange(batch):
        for c in range(channels):
            plane = U((b * channels + c) * height * width)
            result = U((b * channels + c) * out_h * out_w)
            for oh in range(out_h):
                rows = min(kernel, height - oh * stride)
                for ow in range(out_w):
                    cols = min(kernel, width - ow * stride)
                    share = flat_out[result + U(oh * out_w + ow)] / (rows * cols)
                    corner = plane + U(oh * stride * width + ow * stride)
                    for kh in range(rows):
                        for kw in range(cols):
                            flat_grad[corner + U(kh * width + kw)] += share
    return grad


@njit(cache=True, fastmath={"contract"})
def _gemm_rows(a, panel, offsets, c, i, rows, k0, depth, j0, j1):
    """c[i:i+rows, j0:j1] += a[i:i+rows, k0:k0+depth] @ B, rows <= 4, where row k of B is
    panel[offsets[k] : offsets[k] + j1-j0] (panel is flat: a packed block of b in `gemm`,
    one image in `conv_shifted`).

    Four rows of c and four rows of B per step: 16 scalars of a stay in registers and every
    inner loop runs over contiguous row slices, which LLVM turns into SIMD fused
    multiply-adds (8 loads and 4 stores feed 16 vector FMAs).
    """
    width = j1 - j0
    if rows < 4:  # the last 1-3 rows of a tile: one row at a time
        for r in range(i, i + rows):
            crow = c[r, j0:j1]
            for k in range(depth):
                start, p = offsets[k], a[r, k0 + k]
                brow = panel[start:start + width]
                for j in range(width):
                    crow[j] += p * brow[j]
        return
    c0, c1, c2, c3 = c[i, j0:j1], c[i + 1, j0:j1], c[i + 2, j0:j1], c[i + 3, j0:j1]
    k4 = depth // 4 * 4
    for k in range(0, k4, 4):
        o0, o1, o2, o3 = offsets[k], offsets[k + 1], offsets[k + 2], offsets[k + 3]
        b0, b1 = panel[o0:o0 + width], panel[o1:o1 + width]
        b2, b3 = panel[o2:o2 + width], panel[o3:o3 + width]
        a0, a1, a2, a3 = a[i, k0 + k:k0 + k + 4], a[i + 1, k0 + k:k0 + k + 4], \
            a[i + 2, k0 + k:k0 + k + 4], a[i + 3, k0 + k:k0 + k + 4]
        p0, p1, p2, p3 = a0[0], a0[1], a0[2], a0[3]
        q0, q1, q2, q3 = a1[0], a1[1], a1[2], a1[3]
        r0, r1, r2, r3 = a2[0], a2[1], a2[2], a2[3]
        s0, s1, s2, s3 = a3[0], a3[1], a3[2], a3[3]
        for j in range(width):
            x0, x1, x2, x3 = b0[j], b1[j], b2[j], b3[j]
            c0[j] += p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3
            c1[j] += q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3
            c2[j] += r0 * x0 + r1 * x1 + r2 * x2 + r3 * x3
            c3[j] += s0 * x0 + s1 * x1 + s2 * x2 + s3 * x3
    for k in range(k4, depth):
        start = offsets[k]
        brow = panel[start:start + width]
        p, q, r, s = a[i, k0 + k], a[i + 1, k0 + k], a[i + 2, k0 + k], a[i + 3, k0 + k]
        for j in range(width):
            c0[j] += p * brow[j]
            c1[j] += q * brow[j]
            c2[j] += r * brow[j]
            c3[j] += s * brow[j]


@njit(parallel=True, cache=True)
def gemm(a, b):
    """Blocked matrix product, parallel over (row block, column block) tiles of the result.

    Shapes: a (M, K), b (K, N) -> (M, N), both C-contiguous and of one float dtype.
    Measured (`python -m benchmarks.kernels`, docs/journal.md, 2 cores, float32): 0.47-0.76x
    of OpenBLAS on squares of 256-2048 and 0.30-0.61x on the MLP and LeNet layer products,
    so the ops use BLAS.
    """
    m, depth = a.shape
    n = b.shape[1]
    # c's rows are padded by 16 entries: with a row stride of a multiple of 4 KB (n = 1024,
    # 2048), the four rows updated together alias in the cache and in store-to-load
    # forwarding, which cost a third of the speed at 1024 (measured)
    padded = np.zeros((m, n + 16), dtype=a.dtype)
    row_blocks = (m + GEMM_MC - 1) // GEMM_MC
    col_blocks = (n + GEMM_NC - 1) // GEMM_NC
    for tile in prange(row_blocks * col_blocks):
        i0 = (tile % row_blocks) * GEMM_MC
        j0 = (tile // row_blocks) * GEMM_NC
        i1, j1 = min(i0 + GEMM_MC, m), min(j0 + GEMM_NC, n)
        # row stride padded off a power of two so the four b rows do not share cache sets
        packed = np.empty((GEMM_KC, GEMM_NC + 16), dtype=a.dtype)
        panel = packed.reshape(-1)
        offsets = np.arange(GEMM_KC) * (GEMM_NC + 16)  # row k of the panel
        for k0 in range(0, depth, GEMM_KC):
            k1 = min(k0 + GEMM_KC, depth)
            packed[:k1 - k0, :j1 - j0] = b[k0:k1, j0:j1]
            for i in range(i0, i1, 4):
                _gemm_rows(a, panel, offsets, padded, i, min(4, i1 - i), k0, k1 - k0, j0, j1)
    return np.ascontiguousarray(padded[:, :n])


# Reductions may be reordered (vectorized sums); NaN and infinity still propagate.
_SUMS = {"reassoc", "contract"}


@njit(parallel=True, cache=True, fastmath=_SUMS)
def batch_norm_forward(x, gamma, beta, eps):
    """Normalize each channel with its batch statistics (see reference.batch_norm_forward).

    Shapes: x (B, C, H, W), gamma, beta (C,) -> y (B, C, H, W), mean (C,), var (C,).
    One thread per channel; its B runs of H*W values are read three times (mean, variance
    around the mean, output), with float64 sums.
    """
    batch, channels, height, width = x.shape
    pixels = height * width
    count = batch * pixels
    y = np.empty_like(x)
    mean, var = np.empty(channels, x.dtype), np.empty(channels, x.dtype)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for c in prange(channels):
        total = 0.0
        for b in range(batch):
            base = U((b * channels + c) * pixels)
            for i in range(pixels):
                total += flat_x[base + U(i)]
        channel_mean = total / count
        squares = 0.0
        for b in range(batch):
            base = U((b * channels + c) * pixels)
            for i in range(pixels):
                deviation = flat_x[base + U(i)] - channel_mean
                squares += deviation * deviation
        channel_var = squares / count
        scale = gamma[c] / np.sqrt(channel_var + eps)
        shift = beta[c] - channel_mean * scale
        for b in range(batch):
            base = U((b * channels + c) * pixels)
            for i in range(pixels):
                flat_y[base + U(i)] = flat_x[base + U(i)] * scale + shift
        mean[c], var[c] = channel_mean, channel_var
    return y, mean, var


@njit(parallel=True, cache=True, fastmath=_SUMS)
def batch_norm_backward(grad_out, x, mean, inv_std, gamma):
    """Gradient of batch_norm_forward (see reference.batch_norm_backward).

    Shapes: grad_out, x (B, C, H, W); mean, inv_std, gamma (C,)
    -> grad_x (B, C, H, W), grad_gamma (C,), grad_beta (C,). One thread per channel, two
    passes: the sums of g and g * x_hat, then grad_x.
    """
    batch, channels, height, width = x.shape
    pixels = height * width
    count = batch * pixels
    grad_x = np.empty_like(x)
    grad_gamma, grad_beta = np.empty(channels, x.dtype), np.empty(channels, x.dtype)
    flat_x, flat_g, flat_grad_x = x.reshape(-1), grad_out.reshape(-1), grad_x.reshape(-1)
    for c in prange(channels):
        center, spread = mean[c], inv_std[c]
        sum_g, sum_g_xhat = 0.0, 0.0
        for b in range(batch):
            base = U((b * channels + c) * pixels)
            for i in range(pixels):
                g = flat_g[base + U(i)]
                sum_g += g
                sum_g_xhat += g * ((flat_x[base + U(i)] - center) * spread)
        scale = gamma[c] * spread
        mean_g, mean_g_xhat = sum_g / count, sum_g_xhat / count
        for b in range(batch):
            base = U((b * channels + c) * pixels)
            for i in range(pixels):
                x_hat = (flat_x[base + U(i)] - center) * spread
                flat_grad_x[base + U(i)] = scale * (flat_g[base + U(i)] - mean_g
                                                    - x_hat * mean_g_xhat)
        grad_gamma[c], grad_beta[c] = sum_g_xhat, sum_g
    return grad_x, grad_gamma, grad_beta



_BLOCK = 65536  # elementwise kernels: values per parallel work item


@njit(parallel=True, cache=True)
def relu_forward(x):
    """max(x, 0), NaN kept (see reference.relu_forward).

    Shapes: x (any, C-contiguous) -> the same shape. Blocks of _BLOCK values are shared
    among the threads; within a block the loop runs over slices, which LLVM vectorizes.
    """
    out = np.empty_like(x)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    size = flat_x.size
    for block in prange((size + _BLOCK - 1) // _BLOCK):
        start, stop = block * _BLOCK, min(size, (block + 1) * _BLOCK)
        source, target = flat_x[start:stop], flat_out[start:stop]
        for i in range(stop - start):
            value = source[i]
            target[i] = 0 if value <= 0 else value  # NaN is not <= 0: it stays NaN
    return out


@njit(parallel=True, cache=True)
def relu_backward(grad_out, out):
    """grad_out where the output is positive, else 0 (see reference.relu_backward).

    Shapes: grad_out, out (any, equal, C-contiguous) -> the same shape.
    """
    grad_x = np.empty_like(grad_out)
    flat_g, flat_out, flat_grad_x = grad_out.reshape(-1), out.reshape(-1), grad_x.reshape(-1)
    size = flat_g.size
    for block in prange((size + _BLOCK - 1) // _BLOCK):
        start, stop = block * _BLOCK, min(size, (block + 1) * _BLOCK)
        grad, kept, target = flat_g[start:stop], flat_out[start:stop], flat_grad_x[start:stop]
        for i in range(stop - start):
            target[i] = grad[i] * (kept[i] > 0)
    return grad_x


@njit(cache=True, fastmath={"contract"})
def _conv_tile_images(x, weight2, channel, shift_h, shift_w, first, last, stride, bias, out,
                      tile, start, stop):
    """Images start ... stop-1 of conv_tiles, one after the other, through one tile buffer.

    Shapes: out (B, N, OH, OW), tile (R, OH*OW), zero wherever padding is read (those
    entries are never written, so they stay zero from image to image).
    """
    filters, depth = weight2.shape
    out_h, out_w = out.shape[2], out.shape[3]
    height = x.shape[2]
    pixels = out_h * out_w
    planes = out.reshape(out.shape[0], filters, pixels)
    for b in range(start, stop):
        for r in range(depth):  # unfold image b: tile[r, oh*OW + ow] = x[b, c, ih, iw]
            c, dh, dw = channel[r], shift_h[r], shift_w[r]
            for oh in range(out_h):
                ih = oh * stride + dh
                if 0 <= ih < height:
                    base = oh * out_w
                    for ow in range(first[r], last[r]):
                        tile[r, base + ow] = x[b, c, ih, ow * stride + dw]
        for n in range(filters):  # planes[b, n] = bias[n] + sum_r W2[n, r] * tile[r]
            plane = planes[b, n]
            value = bias[n]
            for p in range(pixels):
                plane[p] = value
            for r in range(depth):
                w = weight2[n, r]
                source = tile[r]
                for p in range(pixels):
                    plane[p] += w * source[p]


@njit(cache=True)
def _tile_geometry(rows, kernel_h, kernel_w, stride, padding, width, out_w):
    """Per kept row (c, kh, kw): its channel, its shifts, and the output columns
    [first, last) that read inside the image (the rest reads zero padding)."""
    depth = rows.shape[0]
    channel = rows // (kernel_h * kernel_w)
    shift_h = rows // kernel_w % kernel_h - padding
    shift_w = rows % kernel_w - padding
    first = np.empty(depth, np.int64)
    last = np.empty(depth, np.int64)
    for r in range(depth):
        first[r], last[r] = _inside_range(shift_w[r], stride, width, out_w)
    return channel, shift_h, shift_w, first, last


def conv_tiles(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, runs, out):
    """Inference convolution on per-image patch tiles (see reference.conv_tiles).

    Shapes: x (B, C, H, W), weight2 (N, R), rows (R,) int64 (c, kh, kw) indices, bias (N,)
    -> out (B, N, OH, OW), overwritten and returned. The batch is split into `runs` runs of
    images (one per thread); each thread unfolds one image at a time into a tile (R, OH*OW)
    that stays in cache and multiplies it into that image's output planes in place: no
    patch matrix for the whole batch, no layout pass afterwards, the bias written first.
    A single run stays on the calling thread: entering a parallel Numba function costs
    about 30 microseconds even when one thread does all the work (docs/journal.md).
    """
    runs = max(1, min(x.shape[0], runs))
    if runs == 1:
        return _conv_tiles_serial(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias,
                                  out)
    return _conv_tiles_parallel(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias,
                                runs, out)


@njit(cache=True)
def _conv_tiles_serial(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, out):
    geometry = _tile_geometry(rows, kernel_h, kernel_w, stride, padding, x.shape[3],
                              out.shape[3])
    tile = np.zeros((rows.shape[0], out.shape[2] * out.shape[3]), dtype=x.dtype)
    _conv_tile_images(x, weight2, *geometry, stride, bias, out, tile, 0, x.shape[0])
    return out


@njit(parallel=True, cache=True)
def _conv_tiles_parallel(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, runs,
                         out):
    batch = x.shape[0]
    geometry = _tile_geometry(rows, kernel_h, kernel_w, stride, padding, x.shape[3],
                              out.shape[3])
    for run in prange(runs):
        tile = np.zeros((rows.shape[0], out.shape[2] * out.shape[3]), dtype=x.dtype)
        _conv_tile_images(x, weight2, *geometry, stride, bias, out, tile,
                          run * batch // runs, (run + 1) * batch // runs)
    return out


# Eight output pixels of one filter, held in registers: a tuple of eight scalars that LLVM's
# SLP vectorizer packs into one 256-bit SIMD register (see _slp_vectorizer).
LANES = 8


@njit(inline="always")
def _splat8(value):
    return (value, value, value, value, value, value, value, value)


@njit(inline="always")
def _load8(flat, start):
    """flat[start : start + 8] as eight scalars (unsigned indices: no wraparound checks, so
    LLVM sees eight neighbouring loads, one vector load)."""
    i = U(start)
    return (flat[i], flat[i + U(1)], flat[i + U(2)], flat[i + U(3)], flat[i + U(4)],
            flat[i + U(5)], flat[i + U(6)], flat[i + U(7)])


@njit(inline="always")
def _fma8(acc, weight, values):
    """acc + weight * values, lane by lane: one vector fused multiply-add."""
    return (acc[0] + weight * values[0], acc[1] + weight * values[1],
            acc[2] + weight * values[2], acc[3] + weight * values[3],
            acc[4] + weight * values[4], acc[5] + weight * values[5],
            acc[6] + weight * values[6], acc[7] + weight * values[7])


@njit(inline="always")
def _store8(flat, start, acc):
    """flat[start : start + 8] = acc (one vector store)."""
    i = U(start)
    flat[i], flat[i + U(1)], flat[i + U(2)], flat[i + U(3)] = acc[0], acc[1], acc[2], acc[3]
    flat[i + U(4)], flat[i + U(5)] = acc[4], acc[5]
    flat[i + U(6)], flat[i + U(7)] = acc[6], acc[7]


class _slp_vectorizer:
    """LLVM's SLP vectorizer on while the shifted-runs kernel compiles (a context manager).

    Numba keeps it off by default (numba PR #8852, after reported miscompilations), and without
    it the eight-lane tuples above stay eight scalar multiply-adds: 2-3x slower (measured,
    docs/journal.md). Only the code compiled inside this block is affected; the kernel is
    tested against its NumPy reference on random shapes, strides and padding
    (tests/test_kernels.py).
    """

    def __enter__(self):
        self.saved = numba_config.SLP_VECTORIZE
        numba_config.SLP_VECTORIZE = 1

    def __exit__(self, *exception):
        numba_config.SLP_VECTORIZE = self.saved


@njit(cache=True, fastmath={"contract"})
def _conv_chunks(weight2, panel, offsets, bias, chunks, out):
    """out[n].flat[e : e+8] = bias[n] + sum_r W2[n, r] * panel[offsets[r] + p : ... + 8] for
    every filter n and each chunk (p, e) of `chunks`: eight neighbouring output pixels of one
    output row, at p in the planes' row-major order and e in the output's.

    Shapes: weight2 (N, R), panel flat, offsets (R,), bias (N,), chunks (M, 2) with M even,
    out (N, OH, OW) of one image. Blocks of four filters, the N % 4 left over one at a time.
    Rows are summed SHIFTED_KC at a time.
    """
    filters, depth = weight2.shape
    flat = out.reshape(filters, -1)  # (N, OH*OW)
    fours = filters // 4 * 4
    for k0 in range(0, depth, SHIFTED_KC):  # rows k0 ... k1-1, added to the sums so far
        k1 = min(k0 + SHIFTED_KC, depth)
        for i in range(0, fours, 4):
            _chunks_four_filters(weight2, panel, offsets, bias, chunks, flat, i, k0, k1)
        for n in range(fours, filters):
            _chunks_one_filter(weight2, panel, offsets, bias, chunks, flat, n, k0, k1)


@njit(cache=True, fastmath={"contract"})
def _chunks_four_filters(weight2, panel, offsets, bias, chunks, out, i, k0, k1):
    """Filters i ... i+3 of _conv_chunks (out: (N, OH*OW)), rows k0 ... k1-1, two chunks per
    step: eight registers of sums stay put over those rows (two vector loads and four
    broadcasts feed eight vector multiply-adds) and each is stored once, straight into the
    output: no wrapped-around columns and no copy. The sums start from the bias (k0 == 0) or
    from what the rows before k0 left in the output."""
    r0, r1, r2, r3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    for m in range(0, chunks.shape[0], 2):
        p, q = chunks[m, 0], chunks[m + 1, 0]
        e, f = chunks[m, 1], chunks[m + 1, 1]
        if k0 == 0:
            s0, s1, s2, s3 = (_splat8(bias[i]), _splat8(bias[i + 1]), _splat8(bias[i + 2]),
                              _splat8(bias[i + 3]))
            t0, t1, t2, t3 = s0, s1, s2, s3
        else:
            s0, s1, s2, s3 = _load8(r0, e), _load8(r1, e), _load8(r2, e), _load8(r3, e)
            t0, t1, t2, t3 = _load8(r0, f), _load8(r1, f), _load8(r2, f), _load8(r3, f)
        for k in range(k0, k1):
            start = offsets[k]
            v, u = _load8(panel, start + p), _load8(panel, start + q)
            a0, a1 = weight2[i, k], weight2[i + 1, k]
            a2, a3 = weight2[i + 2, k], weight2[i + 3, k]
            s0, t0 = _fma8(s0, a0, v), _fma8(t0, a0, u)
            s1, t1 = _fma8(s1, a1, v), _fma8(t1, a1, u)
            s2, t2 = _fma8(s2, a2, v), _fma8(t2, a2, u)
            s3, t3 = _fma8(s3, a3, v), _fma8(t3, a3, u)
        _store8(r0, e, s0)
        _store8(r1, e, s1)
        _store8(r2, e, s2)
        _store8(r3, e, s3)
        _store8(r0, f, t0)
        _store8(r1, f, t1)
        _store8(r2, f, t2)
        _store8(r3, f, t3)


@njit(cache=True, fastmath={"contract"})
def _chunks_one_filter(weight2, panel, offsets, bias, chunks, out, n, k0, k1):
    """Filter n of _conv_chunks (out: (N, OH*OW)), rows k0 ... k1-1, eight chunks per step
    (eight independent sums in flight, enough to keep two FMA units of four cycles' latency
    busy), the last M % 8 two at a time; sums start as in _chunks_four_filters."""
    row, count = out[n], chunks.shape[0]
    eights = count // 8 * 8
    for m in range(0, eights, 8):
        p0, p1, p2, p3 = chunks[m, 0], chunks[m + 1, 0], chunks[m + 2, 0], chunks[m + 3, 0]
        p4, p5, p6, p7 = chunks[m + 4, 0], chunks[m + 5, 0], chunks[m + 6, 0], chunks[m + 7, 0]
        if k0 == 0:
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = _splat8(bias[n])
        else:
            s0, s1 = _load8(row, chunks[m, 1]), _load8(row, chunks[m + 1, 1])
            s2, s3 = _load8(row, chunks[m + 2, 1]), _load8(row, chunks[m + 3, 1])
            s4, s5 = _load8(row, chunks[m + 4, 1]), _load8(row, chunks[m + 5, 1])
            s6, s7 = _load8(row, chunks[m + 6, 1]), _load8(row, chunks[m + 7, 1])
        for k in range(k0, k1):
            start, a = offsets[k], weight2[n, k]
            s0 = _fma8(s0, a, _load8(panel, start + p0))
            s1 = _fma8(s1, a, _load8(panel, start + p1))
            s2 = _fma8(s2, a, _load8(panel, start + p2))
            s3 = _fma8(s3, a, _load8(panel, start + p3))
            s4 = _fma8(s4, a, _load8(panel, start + p4))
            s5 = _fma8(s5, a, _load8(panel, start + p5))
            s6 = _fma8(s6, a, _load8(panel, start + p6))
            s7 = _fma8(s7, a, _load8(panel, start + p7))
        for j, acc in enumerate((s0, s1, s2, s3, s4, s5, s6, s7)):
            _store8(row, chunks[m + j, 1], acc)
    for m in range(eights, count, 2):
        p, q = chunks[m, 0], chunks[m + 1, 0]
        if k0 == 0:
            s = t = _splat8(bias[n])
        else:
            s, t = _load8(row, chunks[m, 1]), _load8(row, chunks[m + 1, 1])
        for k in range(k0, k1):
            start, a = offsets[k], weight2[n, k]
            s, t = _fma8(s, a, _load8(panel, start + p)), _fma8(t, a, _load8(panel, start + q))
        _store8(row, chunks[m, 1], s)
        _store8(row, chunks[m + 1, 1], t)


@njit(cache=True, fastmath={"contract"})
def _conv_shifted_images(x, weight2, offsets, bias, stride, padding, out, phases, wide, chunks,
                         start, stop):
    """Images start ... stop-1 of conv_shifted, image after image: the output pixels of
    `chunks` (all of them, or one thread's share), or all of them through `wide`.

    Shapes: x (B, C, H, W); phases (C, s, s, H', W') with H' = ceil((H + 2p) / s) (likewise
    W'), zero wherever padding is read (those entries are never written, so they stay zero
    from image to image), unused when s == 1 and p == 0; chunks (M, 2) (see _shifted_layout)
    when OW >= 8, else wide (N, span) with span = (OH-1)*W' + OW.
    """
    filters = weight2.shape[0]
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    row_length = phases.shape[4]  # W': output pixel (oh, ow) sits at oh*W' + ow of a run
    direct = stride == 1 and padding == 0
    flat = phases.reshape(-1)
    for b in range(start, stop):
        if direct:
            panel = x[b].reshape(-1)
        else:  # padded pixel (h, w) of channel c -> phase plane (c, h % s, w % s), (h//s, w//s)
            for c in range(x.shape[1]):
                for ih in range(height):
                    h = ih + padding
                    target = phases[c, h % stride, :, h // stride]  # (s, W')
                    source = x[b, c, ih]
                    for phase in range(stride):
                        # plane column j holds padded column j*s + phase, input column
                        # j*s + phase - p, inside the image for j in [first, last)
                        first = max(0, (padding - phase + stride - 1) // stride)
                        last = min(row_length, (width - 1 + padding - phase) // stride + 1)
                        row = target[phase]
                        for j in range(first, last):
                            row[j] = source[j * stride + phase - padding]
            panel = flat
        if out_w >= LANES:  # eight pixels of an output row at a time, sums in registers
            _conv_chunks(weight2, panel, offsets, bias, chunks, out[b])
            continue
        # narrower outputs: whole runs of span pixels into `wide`, wrapped columns dropped
        span = wide.shape[1]
        for n in range(filters):  # wide[n] = bias[n] + sum_r W2[n, r] * panel[offsets[r]:]
            row, value = wide[n], bias[n]
            for t in range(span):
                row[t] = value
        for i in range(0, filters, 4):
            _gemm_rows(weight2, panel, offsets, wide, i, min(4, filters - i), 0, weight2.shape[1],
                       0, span)
        for n in range(filters):
            row, plane = wide[n], out[b, n]
            for oh in range(out_h):
                source = row[oh * row_length:oh * row_length + out_w]
                target = plane[oh]
                for ow in range(out_w):
                    target[ow] = source[ow]


@njit(cache=True)
def _shifted_layout(x, weight2, rows, kernel_h, kernel_w, stride, padding, out):
    """Where each kept row (c, kh, kw) starts in the flattened phase planes, the chunks of
    eight output pixels, and this thread's buffers (see conv_shifted).

    chunks (M, 2): for each output row oh and ow0 = 0, 8, 16, ... (the last one moved left to
    OW-8, overlapping the one before it), the chunk's start oh*W' + ow0 in the planes and
    oh*OW + ow0 in the output; the last chunk is repeated when M would be odd. Empty when
    OW < 8 (then `wide` is used instead). When the last chunk of a row overlaps, each row
    gets an even number of chunks (its first one repeated), so that the two overlapping
    chunks fall in one pair, which reads its partial sums before it writes any: across
    blocks of rows (SHIFTED_KC), a pixel must get each row's product once.
    """
    channels = x.shape[1]
    height = -(-(x.shape[2] + 2 * padding) // stride)  # H' = ceil((H + 2p) / s)
    width = -(-(x.shape[3] + 2 * padding) // stride)
    offsets = np.empty(rows.shape[0], dtype=np.int64)
    for r in range(rows.shape[0]):  # one loop, no temporaries: this runs on every call
        row = rows[r]
        c, kh, kw = row // (kernel_h * kernel_w), row // kernel_w % kernel_h, row % kernel_w
        phase = (c * stride + kh % stride) * stride + kw % stride
        offsets[r] = phase * (height * width) + (kh // stride) * width + kw // stride
    out_h, out_w = out.shape[2], out.shape[3]
    if stride == 1 and padding == 0:
        phases = np.zeros((1, 1, 1, 1, width), dtype=x.dtype)  # only its width: x is read
    else:
        phases = np.zeros((channels, stride, stride, height, width), dtype=x.dtype)
    if out_w >= LANES:
        needed = -(-out_w // LANES)  # chunks that cover a row
        per_row = needed + needed % 2 if out_w % LANES else needed
        count = out_h * per_row
        chunks = np.empty((count + count % 2, 2), dtype=np.int64)
        extra = per_row - needed
        for oh in range(out_h):
            for j in range(per_row):  # with an extra chunk: the row's first, twice
                ow = min(max(j - extra, 0) * LANES, out_w - LANES)
                chunks[oh * per_row + j, 0] = oh * width + ow
                chunks[oh * per_row + j, 1] = oh * out_w + ow
        chunks[count:] = chunks[count - 1]
        wide = np.empty((0, 0), dtype=x.dtype)
    else:
        chunks = np.empty((0, 2), dtype=np.int64)
        wide = np.empty((weight2.shape[0], (out_h - 1) * width + out_w), dtype=x.dtype)
    return offsets, phases, wide, chunks


def conv_shifted(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, threads, out):
    """Inference convolution on shifted runs of each image (see reference.conv_shifted).

    Shapes: x (B, C, H, W) C-contiguous, weight2 (N, R), rows (R,) int64 (c, kh, kw)
    indices, bias (N,) -> out (B, N, OH, OW), overwritten and returned.
    Patch row (c, kh, kw) of output pixel (oh, ow) is padded input pixel
    (c, oh*s + kh, ow*s + kw). Split each padded image into s*s phase planes
    (c, h % s, w % s) of H' x W' pixels (h // s, w // s): that pixel is pixel
    (oh + kh//s, ow + kw//s) of one plane. Computed on rows as wide as a plane, the output
    pixels oh*W' + ow of patch row (c, kh, kw) are then one contiguous run of the planes,
    starting at offsets[r]: no patch tile is built at all (for stride 1 without padding the
    image itself is the one plane). Eight neighbouring pixels of an output row are eight
    neighbouring entries of each run, so each output row is computed eight pixels at a time,
    four filters at once, with the sums in SIMD registers over all R rows (_conv_chunks).
    Outputs narrower than eight pixels take whole runs instead (W2 @ runs, register-blocked
    by _gemm_rows into an (N, span) buffer, its OW-wide rows copied out, the W'-OW wrapped-
    around columns between them computed and dropped).
    The work is split over `threads` threads: into runs of images, and when there are fewer
    images than threads and each image is SHIFTED_SPLIT_MACS multiply-adds or more (and at
    least eight pixels wide), each image's chunks into parts too (each part splits the image
    into its own phase planes). Work for one thread stays on the calling thread: entering a
    parallel Numba function costs a few microseconds while the pool's threads still spin,
    50-70 once they sleep (minissl.backend).
    """
    batch = x.shape[0]
    runs = max(1, min(batch, threads))
    parts = 1
    macs = weight2.shape[0] * weight2.shape[1] * out.shape[2] * out.shape[3]  # per image
    if runs < threads and macs >= SHIFTED_SPLIT_MACS and out.shape[3] >= LANES:
        parts = threads // runs
    with _slp_vectorizer():
        if runs * parts == 1:
            return _conv_shifted_serial(x, weight2, rows, kernel_h, kernel_w, stride, padding,
                                        bias, out)
        return _conv_shifted_parallel(x, weight2, rows, kernel_h, kernel_w, stride, padding,
                                      bias, runs, parts, out)


@njit(cache=True)
def _conv_shifted_serial(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, out):
    offsets, phases, wide, chunks = _shifted_layout(x, weight2, rows, kernel_h, kernel_w,
                                                    stride, padding, out)
    _conv_shifted_images(x, weight2, offsets, bias, stride, padding, out, phases, wide, chunks,
                         0, x.shape[0])
    return out


@njit(parallel=True, cache=True)
def _conv_shifted_parallel(x, weight2, rows, kernel_h, kernel_w, stride, padding, bias, runs,
                           parts, out):
    batch = x.shape[0]
    for task in prange(runs * parts):  # (run of images, part of each image's chunks)
        run, part = task // parts, task % parts
        offsets, phases, wide, chunks = _shifted_layout(x, weight2, rows, kernel_h, kernel_w,
                                                        stride, padding, out)
        pairs = chunks.shape[0] // 2  # parts take whole pairs: each keeps an even count
        share = chunks[part * pairs // parts * 2:(part + 1) * pairs // parts * 2]
        _conv_shifted_images(x, weight2, offsets, bias, stride, padding, out, phases, wide,
                             share, run * batch // runs, (run + 1) * batch // runs)
    return out
