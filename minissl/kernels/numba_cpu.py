"""Numba kernels: compiled twins of `reference.py`, same names, same signatures: unfold
(im2col) and fold (col2im), pooling, BatchNorm, ReLU and a blocked GEMM.

Every function here is checked against its reference twin on a hypothesis grid
(tests/test_kernels.py). They are plain loops a learner can read top to bottom; with
NUMBA_DISABLE_JIT=1 they run as ordinary Python and can be stepped through in a debugger.
The inference-only convolutions, tuned for speed rather than for reading, are apart, in
numba_inference.py.

Threading policy (measured, docs/journal.md): one `prange` per kernel, on its outermost
loop (images, patch rows, or GEMM tiles). OpenBLAS and Numba share the two cores; idle
threads of both sleep instead of spinning (minissl.process, docs/performance.md). The
unfold and fold kernels come twice, compiled from one body (`parallel_and_serial`): split
over the cores, or on the calling thread alone for worker threads that each take a chunk
of images (minissl.workers).
"""

import types

import numpy as np
from numba import njit, prange

U = np.uint64  # unsigned array offsets: no negative-index wraparound check in the loop

# GEMM blocking: a packed (GEMM_KC x GEMM_NC) panel of b (512 KB of float32) stays in the
# L2 cache while the GEMM_MC rows of a tile stream past it, four rows at a time.
GEMM_KC = 256
GEMM_NC = 512
GEMM_MC = 128


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
    # clamped to the block: with a window larger than the image, |shift| can exceed `pixels`
    # (compiled loops do not check bounds, and a write past the block would land in the
    # next patch row)
    start = min(pixels, max(0, -shift))
    stop = max(start, min(pixels, pixels - shift))
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


def parallel_and_serial(body):
    """Two compiled kernels from one Python function whose outer loop is a `prange`: split
    over Numba's threads, and on the calling thread alone without holding the GIL (Numba
    runs a prange as a plain range when not compiling in parallel). The serial twin is
    compiled from a copy named <name>_serial, so that each has its own on-disk cache."""
    serial = types.FunctionType(body.__code__, body.__globals__, f"{body.__name__}_serial",
                                body.__defaults__, body.__closure__)
    serial.__qualname__ = f"{body.__qualname__}_serial"
    serial.__doc__ = f"{body.__name__} on the calling thread alone, without holding the GIL."
    return njit(parallel=True, cache=True)(body), njit(nogil=True, cache=True)(serial)


def _gathered_im2col(x, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, cols):
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


gathered_im2col, gathered_im2col_serial = parallel_and_serial(_gathered_im2col)


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


def _gathered_col2im(cols, rows, kernel_h, kernel_w, stride, padding, out_h, out_w, x):
    """Fold the listed patch rows back into the image `x`, summing overlaps (see reference).

    Shapes: cols (R, B*OH*OW), rows (R,) increasing int64 -> x (B, C, H, W), overwritten
    and returned. One thread per (image, channel) plane: only the rows of channel c (a
    contiguous run of the increasing `rows`) write into it, so no two threads share a pixel.
    """
    for plane in prange(x.shape[0] * x.shape[1]):
        _fold_plane(cols, rows, plane, kernel_h, kernel_w, stride, padding, out_h, out_w, x)
    return x


gathered_col2im, gathered_col2im_serial = parallel_and_serial(_gathered_col2im)


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


@njit(parallel=True, cache=True)
def channel_affine(x, scale, shift):
    """y = x * scale[c] + shift[c] per channel (see reference.channel_affine).

    Shapes: x (B, C, H, W), scale, shift (C,) -> y (B, C, H, W). One pass over memory; the
    B*C planes of H*W values are split over the threads. No fastmath: a multiply, then an
    add, as NumPy rounds them, so the result equals the reference bit for bit.
    """
    batch, channels, height, width = x.shape
    pixels = height * width
    y = np.empty_like(x)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for plane in prange(batch * channels):
        c = plane % channels
        scale_c, shift_c = scale[c], shift[c]
        base = U(plane * pixels)
        for i in range(pixels):
            flat_y[base + U(i)] = flat_x[base + U(i)] * scale_c + shift_c
    return y


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
