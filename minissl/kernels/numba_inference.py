"""Numba kernels for inference only: a convolution without the patch matrix of im2col.

Two twins of `reference.py` (same names, same signatures, tested against it on random shapes,
strides and padding in tests/test_kernels.py), tuned for speed rather than for reading:

- `conv_tiles`: one image at a time, unfolded into a patch tile that stays in cache and
  multiplied into that image's output in place (small calls: a few images, small layers);
- `conv_shifted`: no patch tile at all; the output is computed from shifted runs of each
  image's phase planes, eight pixels of an output row at a time with the sums held in SIMD
  registers (a tuple of eight scalars that LLVM's SLP vectorizer packs into one register).

Which of them, or im2col + BLAS, runs for a layer is decided in one place:
minissl/kernels/choice.py. The textbook kernels they build on are in numba_cpu.py.
"""

import numpy as np
from numba import njit, prange
from numba.core import config as numba_config

from minissl.kernels.numba_cpu import U, _inside_range, _gemm_rows

# conv_shifted splits an image's output rows over threads from this many multiply-adds per
# image (AlexNet's layers at batch 1); below it a second thread costs more than it saves.
SHIFTED_SPLIT_MACS = 2_000_000
# ... and sums over at most this many kept rows at a time, the partial sums parked in the
# output in between, so that the rows' weights (2 KB per four filters) and the planes they
# read stay in the L1 cache from chunk to chunk: AlexNet's conv5 with 10% of its 3456 rows
# kept (gathered from all 384 channels) went from 16.5 to 28 GMAC/s on one thread; dense
# layers were unchanged (128, 256 and 512 within 10% of each other)
SHIFTED_KC = 128


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
