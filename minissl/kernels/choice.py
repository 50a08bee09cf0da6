"""Which algorithm an inference convolution runs: the one home of that choice.

Three paths compute the same convolution (to float rounding):

    "gemm"     im2col + a BLAS product (kernels.im2col; what training always runs)
    "tiles"    a per-image kernel over patch tiles kept in cache (kernels.conv_tiles)
    "shifted"  products of shifted runs of each image, no patch matrix (kernels.conv_shifted)

Only inference (no gradient wanted) on the Numba backend with NumPy arrays may take the last
two. Which one runs is, in order: the path a layer holds for that batch size (chosen by
timing them, minissl.timing.tune_convolutions, and set with timing.apply_conv_choices), else
the cost model `conv_algorithm` below. `explain(layer, input_shape)` says which and why.

The cost model, measured with `python -m benchmarks.conv_tiles` (docs/journal.md, "Small
convolutions at small batches", "Shifted runs instead of patches" and "Sums in registers"):
im2col + BLAS pays fixed costs per call (the patch matrix, BLAS threads waking, a layout
pass) that small layers do not amortize, and writes a patch matrix R times the size of the
input. Since the shifted-runs kernel computes eight pixels of an output row at a time with
its sums in registers (outputs at least SHIFTED_MIN_WIDTH wide), it was the fastest path on
every LeNet, CIFAR ConvNet and ResNet layer measured, at batch 1 and 100 (1.6-10x faster than
BLAS), and on most of AlexNet's; on AlexNet's 13x13 layers with hundreds of filters at batch
1 BLAS can still win, which the tuner finds. Narrower outputs fall back on the older rules:
shifted runs for stride 1 up to SHIFTED_MAX_MACS_PER_IMAGE multiply-adds per image, the tile
kernel for a few images through a small strided layer, BLAS otherwise.
"""

ALGORITHMS = ("gemm", "tiles", "shifted")

SHIFTED_MIN_WIDTH = 8  # the shifted kernel's chunk: eight pixels of an output row (its LANES)
SHIFTED_MAX_MACS_PER_IMAGE = 1_000_000
TILE_MAX_BATCH = 16
TILE_MAX_MACS_PER_IMAGE = 1_000_000


def check_algorithm(algorithm):
    """Raise ValueError unless `algorithm` is one of ALGORITHMS or None (the cost model)."""
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"conv algorithm must be one of {ALGORITHMS} or None, got {algorithm!r}")


def _decide(batch, filters, depth, out_h, out_w, stride):
    """(algorithm, why) of the cost model."""
    if out_w >= SHIFTED_MIN_WIDTH:
        return "shifted", (f"the output is {out_w} >= {SHIFTED_MIN_WIDTH} pixels wide: the "
                           f"shifted-runs kernel fills its {SHIFTED_MIN_WIDTH} lanes")
    macs = filters * depth * out_h * out_w  # per image
    if stride == 1 and macs <= SHIFTED_MAX_MACS_PER_IMAGE:
        return "shifted", (f"stride 1 and {macs:,} <= {SHIFTED_MAX_MACS_PER_IMAGE:,} "
                           f"multiply-adds per image: too small for BLAS to pay off")
    if batch <= TILE_MAX_BATCH and macs <= TILE_MAX_MACS_PER_IMAGE:
        return "tiles", (f"{batch} <= {TILE_MAX_BATCH} images of {macs:,} <= "
                         f"{TILE_MAX_MACS_PER_IMAGE:,} multiply-adds each: a few small calls")
    return "gemm", f"{batch} images of {macs:,} multiply-adds each: large enough for BLAS"


def conv_algorithm(batch, filters, depth, out_h, out_w, stride=1):
    """The cost model: "shifted", "tiles" or "gemm" for an inference convolution of `batch`
    images with W2 of shape (filters, depth), an OH x OW output and `stride`."""
    return _decide(batch, filters, depth, out_h, out_w, stride)[0]


def _output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def explain(layer, input_shape, training=False, backend="numba"):
    """Which path a convolution runs, and why, as one line of text.

    `layer` is a Conv2d or GatheredConv2d (anything with weight, kernel_size, stride,
    padding and `algorithms`), `input_shape` its input (B, C_in, H, W). `training` (a
    gradient is wanted) and `backend` (minissl.get_backend()) say where it runs.
    """
    batch, _, height, width = input_shape
    kernel_h, kernel_w = layer.kernel_size
    filters, depth = layer.weight.shape[0], int(layer.weight.data[0].size)
    out_h = _output_size(height, kernel_h, layer.stride, layer.padding)
    out_w = _output_size(width, kernel_w, layer.stride, layer.padding)
    shape = f"{batch} x ({filters} x {depth}) on {out_h} x {out_w}, stride {layer.stride}"
    if training:
        return f"gemm ({shape}): a gradient is wanted, and only im2col + BLAS has a backward"
    if backend != "numba":
        return f"gemm ({shape}): the {backend} backend has only im2col + a matrix product"
    tuned = getattr(layer, "algorithms", {}).get(batch)
    if tuned is not None:
        return (f"{tuned} ({shape}): chosen for batch {batch} by timing the paths "
                f"(minissl.timing.tune_convolutions)")
    algorithm, why = _decide(batch, filters, depth, out_h, out_w, layer.stride)
    return f"{algorithm} ({shape}): the cost model: {why}"
