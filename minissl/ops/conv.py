"""2-D convolution (cross-correlation, as in every deep-learning framework) via im2col + GEMM.

Forward, for W2 = weight.reshape(C_out, C_in*KH*KW) (rows = filters, columns = shape
fibers (c, kh, kw), docs/design.md, "Weight views and groups"):

    cols = im2col(x)                 (C_in*KH*KW, B*OH*OW)
    out  = W2 @ cols + b             (C_out, B*OH*OW) -> (B, C_out, OH, OW)

Backward, with G = grad_out as (C_out, B*OH*OW):

    grad_W2 = (cols @ G.T).T,   grad_b = G summed over columns,   grad_x = col2im(W2.T @ G)

For stride 1 with C_out <= C_in (the ResNet's 3x3 layers), grad_x is instead the forward
convolution run backwards: grad_out correlated with the filters flipped in space and with
in/out channels swapped, padding KH-1-p (`_grad_x_by_correlation`). Same numbers; its GEMM
sums over C_out*KH*KW terms instead of C_out, which BLAS runs faster.

The GEMMs are BLAS (`xp.matmul` into reused buffers); im2col/col2im are the backend's kernels.
Without autograd (inference under no_grad) on the Numba backend, a small call (a few images
through a small layer) runs the per-image tile kernel instead (kernels.conv_tiles): same
result, without the fixed costs of the GEMM path; and a layer with large output maps the
shifted-runs kernel (kernels.conv_shifted), which multiplies shifted runs of each image
without building any patch matrix (the cost model: kernels.conv_algorithm). A caller may
name the path instead (`algorithm`): minissl.timing.tune_convolutions picks it per layer and
batch size by timing them.

Chunks and buffers (measured on the CIFAR shapes, docs/journal.md): the patch matrix is
C_in*KH*KW times larger than the output (75 MB for a 3x3 16-channel layer at batch 128).
Built whole, it costs more in page faults and cache misses than the GEMM it feeds. So the
batch is processed in chunks of images whose patches fit in about 4 MB (COLS_CHUNK_ELEMENTS),
the patches are rebuilt in backward instead of kept, and the patch, product and gradient
matrices of a chunk live in scratch buffers that are reused from call to call (`_scratch`):
a fresh array of that size would be page-faulted in again on every call. On the Numba backend
the chunks run side by side, one worker thread per core, each unfolding and multiplying its
own chunk (minissl.workers; a training step of the ConvNet 1.5x and of ResNet-20 1.85x faster
than one chunk at a time with every kernel split over the cores, docs/journal.md).

Reference: Chellapilla et al., "High performance convolutional neural networks for document
processing", 2006 (convolution unrolled into a matrix product); Jia et al., Caffe, 2014.
"""

import threading

import numpy as np

from minissl import kernels, workers
from minissl.autograd import Function, is_grad_enabled
from minissl.backend import get_backend, xp_of
from minissl.ops.shape import reshape
from minissl.tensor import Tensor

COLS_CHUNK_ELEMENTS = 2 ** 20      # NumPy: patch chunks of 4 MB (float32) stay in cache
GEMM_FILTER_MULTIPLE = 4  # NumPy: forward GEMMs on filter counts padded to a multiple of this
GEMM_PAD_MIN_DEPTH = 64   # ... when W2 has at least this many columns (the GEMM is the cost)
GPU_COLS_CHUNK_ELEMENTS = 2 ** 26  # CuPy: one chunk per batch on CIFAR shapes (few, big GEMMs)

_SCRATCH = threading.local()  # .buffers: (name, array module, dtype) -> flat buffer


def _scratch(name, shape, dtype, xp):
    """A C-contiguous array of `shape` carved from this thread's reusable buffer `name`.

    Its contents are whatever the last user left. Each name has one buffer per thread, array
    module and dtype, so two buffers in use at the same time need two names, and chunks
    running side by side on worker threads (minissl.workers) each have their own.
    """
    size = int(np.prod(shape))
    key = (name, xp.__name__, np.dtype(dtype).str)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def _side_by_side(xp):
    """Whether this convolution's chunks may run on the worker threads (minissl.workers):
    on the Numba backend with NumPy arrays."""
    return xp is np and get_backend() == "numba"


def _image_chunks(batch, rows, pixels, xp):
    """[(start, stop), ...] covering the batch, each chunk's patches within the budget of
    the array module `xp` (a GPU has memory to spare and wants large GEMMs), their sizes
    within one image of each other. With chunks side by side, their count is a multiple of
    the workers' so that none waits alone at the end."""
    budget = COLS_CHUNK_ELEMENTS if xp is np else GPU_COLS_CHUNK_ELEMENTS
    count = -(-batch * rows * pixels // budget)
    if _side_by_side(xp):
        team = workers.worker_count()
        count = -(-count // team) * team
    count = min(batch, max(1, count))
    return [(batch * index // count, batch * (index + 1) // count) for index in range(count)]


class Conv2d(Function):
    """Convolution on the GEMM view of the weight, W2 (C_out, R), where R is C_in*KH*KW or,
    for a shape-compacted layer, the number of kept (c, kh, kw) rows listed in `rows`."""

    @staticmethod
    def forward(ctx, x, weight2, *bias, kernel_size, stride, padding, rows):
        xp = xp_of(x)
        kernel_h, kernel_w = kernel_size
        (c_out, depth), batch = weight2.shape, x.shape[0]
        out_h = kernels.conv_output_size(x.shape[2], kernel_h, stride, padding)
        out_w = kernels.conv_output_size(x.shape[3], kernel_w, stride, padding)
        pixels = out_h * out_w
        geometry = (kernel_h, kernel_w, stride, padding)
        chunks = _image_chunks(batch, depth, pixels, xp)
        out = xp.empty((batch, c_out, pixels), dtype=x.dtype)
        gemm_weight2 = _padded_filters(weight2, xp)  # (C_out rounded up, R)

        def forward_chunk(start, stop, serial):
            images = stop - start
            cols = kernels.im2col(x[start:stop], *geometry, rows=rows, serial=serial,
                                  out=_scratch("cols", (depth, images * pixels), x.dtype, xp))
            product = _scratch("product", (gemm_weight2.shape[0], images * pixels), x.dtype, xp)
            xp.matmul(gemm_weight2, cols, out=product)  # (C_out (+ zero rows), b*OH*OW)
            # (C_out, b*OH*OW) -> (C_out, b, OH*OW) -> (b, C_out, OH*OW), plus the bias in
            # the same pass over memory
            product = product[:c_out].reshape(c_out, images, pixels).transpose(1, 0, 2)
            if bias:
                xp.add(product, bias[0][:, None], out=out[start:stop])
            else:
                out[start:stop] = product

        workers.run_chunks(forward_chunk, chunks, _side_by_side(xp))
        ctx.x, ctx.weight2, ctx.chunks, ctx.geometry, ctx.rows = x, weight2, chunks, geometry, rows
        return out.reshape(batch, c_out, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        xp = xp_of(grad_out)
        c_out, pixels = grad_out.shape[1], grad_out.shape[2] * grad_out.shape[3]
        needs = ctx.needs_grad
        weight2, x, geometry, rows = ctx.weight2, ctx.x, ctx.geometry, ctx.rows
        depth = weight2.shape[1]
        grad_x = xp.empty(x.shape, dtype=x.dtype) if needs[0] else None
        flipped2 = None
        if needs[0] and _correlation_pays(x.shape[1], c_out, geometry, rows):
            flipped2 = _flipped_weight2(weight2, x.shape[1], geometry)

        def backward_chunk(start, stop, serial):
            """Fills grad_x[start:stop]; returns this chunk's share of grad_W2 (or None)."""
            images = stop - start
            if needs[1] or flipped2 is None:  # G as one matrix (the correlation needs none)
                # (b, C_out, OH, OW) -> (C_out, b, OH*OW) -> (C_out, b*OH*OW)
                grad2 = _scratch("grad", (c_out, images * pixels), x.dtype, xp)
                grad2.reshape(c_out, images, pixels)[...] = grad_out[start:stop].reshape(
                    images, c_out, pixels).transpose(1, 0, 2)
            if needs[0] and flipped2 is not None:
                _grad_x_by_correlation(grad_out[start:stop], flipped2, geometry, serial,
                                       grad_x[start:stop])
            elif needs[0]:
                grad_cols = _scratch("grad_cols", (depth, images * pixels), x.dtype, xp)
                xp.matmul(weight2.T, grad2, out=grad_cols)  # (R, b*OH*OW)
                kernels.col2im(grad_cols, (images, *x.shape[1:]), *geometry, rows=rows,
                               out=grad_x[start:stop], serial=serial)
            if not needs[1]:
                return None
            cols = kernels.im2col(x[start:stop], *geometry, rows=rows, serial=serial,
                                  out=_scratch("cols", (depth, images * pixels), x.dtype, xp))
            # grad_W2^T = cols @ G^T (R, C_out): the same product as G @ cols.T, which OpenBLAS
            # runs 5-25% slower on these shapes (C_out of 16-64 rows, docs/journal.md)
            return cols @ grad2.T

        shares = workers.run_chunks(backward_chunk, ctx.chunks, _side_by_side(xp))
        grad_weight2 = None
        if needs[1]:
            grad_weight2 = shares[0]  # (R, C_out)
            for share in shares[1:]:  # in chunk order: the same sum whichever worker ran what
                grad_weight2 += share
            grad_weight2 = xp.ascontiguousarray(grad_weight2.T)  # (C_out, R)
        grad_bias = None
        if len(needs) > 2 and needs[2]:
            grad_bias = grad_out.sum(axis=(0, 2, 3))  # (C_out,)
        return grad_x, grad_weight2, grad_bias


def _padded_filters(weight2, xp):
    """W2 (C_out, R) with zero rows appended up to a multiple of GEMM_FILTER_MULTIPLE (NumPy
    arrays only; W2 itself when C_out is one already): the forward GEMM's filter count.

    OpenBLAS's sgemm takes the filters of W2 @ cols four at a time and runs a remainder of
    one to three filters on slower edge kernels. Measured on one core (K = 357, N = 2816,
    `python -m benchmarks.filter_counts`): 23 filters 1.03 ms, 24 filters 0.79 ms, and no
    count faster than the next multiple of four; on whole compacted convolutions at batch
    100 the zero rows made the call 3-20% faster (docs/journal.md, "Filter counts that BLAS
    likes"). Compacted layers keep any number of filters; their zero rows' outputs are
    computed and never read. Below
    GEMM_PAD_MIN_DEPTH columns the GEMM is too small a share of the call for the extra rows
    to pay (LeNet's 50 x 14 layer: 4% slower padded), so W2 is left as it is.
    """
    c_out, depth = weight2.shape
    extra = -c_out % GEMM_FILTER_MULTIPLE
    if xp is not np or extra == 0 or depth < GEMM_PAD_MIN_DEPTH:
        return weight2
    padded = xp.zeros((c_out + extra, depth), dtype=weight2.dtype)
    padded[:c_out] = weight2
    return padded


def _correlation_pays(c_in, c_out, geometry, rows):
    """Whether grad_x is computed as a correlation of grad_out with the flipped filters
    (`_grad_x_by_correlation`) instead of col2im(W2.T @ G).

    Only for stride 1, a square kernel, padding <= kernel - 1 and all C_in*KH*KW columns
    (not a shape-compacted layer), and only when C_out <= C_in, so that the patch matrix of
    grad_out is no larger than the forward one. Measured per chunk on one core: 8-35%
    faster on the ResNet's 3x3 layers (16, 32, 64 channels) and the ConvNet's conv2, since
    its GEMM sums over C_out*KH*KW terms where W2.T @ G sums over only C_out, and im2col is
    cheaper than col2im; 20% slower with C_out = 2 C_in (the ConvNet's conv3).
    """
    kernel_h, kernel_w, stride, padding = geometry
    return (rows is None and stride == 1 and kernel_h == kernel_w
            and padding <= kernel_h - 1 and c_out <= c_in)


def _flipped_weight2(weight2, c_in, geometry):
    """W2 (C_out, C_in*KH*KW) -> the filters of the transposed convolution, (C_in,
    C_out*KH*KW): F[c, o, i, j] = W[o, c, KH-1-i, KW-1-j]."""
    kernel_h, kernel_w = geometry[:2]
    weight = weight2.reshape(weight2.shape[0], c_in, kernel_h, kernel_w)
    flipped = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    return xp_of(weight2).ascontiguousarray(flipped).reshape(c_in, -1)


def _grad_x_by_correlation(grad_out, flipped2, geometry, serial, grad_x):
    """grad_x = the correlation of grad_out with the flipped filters, padded KH-1-p, for a
    stride-1 convolution: grad_x[c, y, x] = sum over o, i, j of
    grad_out[o, y + p - i, x + p - j] * W[o, c, i, j] (the adjoint of the forward sum).

    Shapes: grad_out (b, C_out, OH, OW), flipped2 (C_in, C_out*KH*KW) -> fills grad_x
    (b, C_in, H, W), which must be contiguous.
    """
    xp = xp_of(grad_out)
    kernel_h, kernel_w, _, padding = geometry
    images, c_in, pixels = grad_x.shape[0], grad_x.shape[1], grad_x.shape[2] * grad_x.shape[3]
    cols = kernels.im2col(grad_out, kernel_h, kernel_w, 1, kernel_h - 1 - padding,
                          serial=serial, out=_scratch("grad_cols", (flipped2.shape[1],
                                                      images * pixels), grad_out.dtype, xp))
    product = _scratch("product", (c_in, images * pixels), grad_out.dtype, xp)
    xp.matmul(flipped2, cols, out=product)  # (C_in, b*H*W)
    grad_x.reshape(images, c_in, pixels)[...] = product.reshape(c_in, images,
                                                                pixels).transpose(1, 0, 2)


def _inference(x, weight2, bias, kernel_size, stride, padding, rows, algorithm):
    """The convolution without autograd on the per-image tile kernel or the shifted-runs
    kernel, or None when a gradient may be wanted or `algorithm` is "gemm" (None: the cost
    model, kernels.conv_algorithm, decides).

    Only on the Numba backend with NumPy arrays; the result equals Conv2d's to rounding.
    """
    kernels.choice.check_algorithm(algorithm)
    tensors = (x, weight2) if bias is None else (x, weight2, bias)
    if (is_grad_enabled() and any(tensor.requires_grad for tensor in tensors)) or (
            get_backend() != "numba" or xp_of(x.data) is not np):
        return None
    out_h = kernels.conv_output_size(x.shape[2], kernel_size[0], stride, padding)
    out_w = kernels.conv_output_size(x.shape[3], kernel_size[1], stride, padding)
    if algorithm is None:
        algorithm = kernels.conv_algorithm(x.shape[0], *weight2.shape, out_h, out_w, stride)
    bias = None if bias is None else bias.data
    if algorithm == "tiles":
        return Tensor(kernels.conv_tiles(x.data, weight2.data, *kernel_size, stride, padding,
                                         rows, bias))
    if algorithm == "shifted":
        return Tensor(kernels.conv_shifted(x.data, weight2.data, *kernel_size, stride, padding,
                                           rows, bias))
    return None


def _check_conv_inputs(x, weight, bias, c_in, name):
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{name} expects Tensors for x and weight")
    if x.ndim != 4:
        raise ValueError(f"{name} expects x (B, C_in, H, W), got {x.shape}")
    if x.shape[1] != c_in:
        raise ValueError(f"{name}: input has {x.shape[1]} channels but weight {weight.shape} "
                         f"expects {c_in}")
    if x.dtype != weight.dtype:
        raise TypeError(f"{name}: x is {x.dtype} but weight is {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), got {bias.shape}")


def conv2d(x, weight, bias=None, stride=1, padding=0, algorithm=None):
    """2-D cross-correlation of a batch of images with a bank of filters.

    Shapes: x (B, C_in, H, W), weight (C_out, C_in, KH, KW), bias (C_out,) or None
    -> (B, C_out, OH, OW) with OH = (H + 2*padding - KH) // stride + 1 (likewise OW).
    dtype: x and weight must share float32 or float64. Raises ValueError naming the shapes
    when the channels do not match or the kernel does not fit the padded input.
    `algorithm` ("gemm", "tiles", "shifted" or None: the cost model) picks the path of an
    inference call on the Numba backend; calls that may need a gradient always take
    im2col + BLAS.
    """
    if isinstance(weight, Tensor) and weight.ndim != 4:
        raise ValueError(f"conv2d expects x (B, C_in, H, W) and weight (C_out, C_in, KH, KW), "
                         f"got {getattr(x, 'shape', x)} and {weight.shape}")
    _check_conv_inputs(x, weight, bias, weight.shape[1] if isinstance(weight, Tensor) else -1,
                       "conv2d")
    weight2 = reshape(weight, (weight.shape[0], -1))  # (C_out, C_in*KH*KW)
    fast = _inference(x, weight2, bias, tuple(weight.shape[2:]), stride, padding, None,
                      algorithm)
    if fast is not None:
        return fast
    inputs = (x, weight2) if bias is None else (x, weight2, bias)
    return Conv2d.apply(*inputs, kernel_size=tuple(weight.shape[2:]), stride=stride,
                        padding=padding, rows=None)


def conv2d_gathered(x, weight2, rows, kernel_size, bias=None, stride=1, padding=0,
                    algorithm=None):
    """Shape-compacted convolution: only the kept (c, kh, kw) columns of W2 take part.

    Shapes: x (B, C_in, H, W), weight2 (C_out, R), rows (R,) increasing indices into the
    C_in*KH*KW shape fibers, bias (C_out,) or None -> (B, C_out, OH, OW). Equals conv2d with
    a weight that is zero outside `rows` (docs/design.md, Compaction). `algorithm`
    as in conv2d.
    """
    rows = np.asarray(rows, dtype=np.int64)
    kernel_h, kernel_w = kernel_size
    if not isinstance(weight2, Tensor) or weight2.ndim != 2 or weight2.shape[1] != len(rows):
        raise ValueError(f"conv2d_gathered expects weight2 (C_out, {len(rows)}), "
                         f"got {getattr(weight2, 'shape', weight2)}")
    c_in = x.shape[1] if isinstance(x, Tensor) and x.ndim == 4 else -1
    _check_conv_inputs(x, weight2, bias, c_in, "conv2d_gathered")
    fast = _inference(x, weight2, bias, (kernel_h, kernel_w), stride, padding, rows, algorithm)
    if fast is not None:
        return fast
    inputs = (x, weight2) if bias is None else (x, weight2, bias)
    return Conv2d.apply(*inputs, kernel_size=(kernel_h, kernel_w), stride=stride,
                        padding=padding, rows=rows)
