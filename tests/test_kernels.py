"""Every Numba kernel equals its NumPy reference; im2col and col2im are adjoint."""

import contextlib

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from minissl import kernels
from minissl.kernels import numba_cpu, numba_inference, reference


@st.composite
def conv_geometries(draw, max_width=9):
    """(x, kernel_h, kernel_w, stride, padding) with the kernel fitting the padded input."""
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel_h, kernel_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    height = draw(st.integers(max(1, kernel_h - 2 * padding), 9))
    width = draw(st.integers(max(1, kernel_w - 2 * padding), max_width))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal((batch, channels, height, width)).astype(dtype)
    if draw(st.booleans()):  # a non-contiguous view of the same values
        x = np.asfortranarray(x)
    return x, kernel_h, kernel_w, stride, padding


@st.composite
def pool_geometries(draw):
    """(x, kernel, stride, ceil_mode) with the window fitting the input."""
    kernel, stride = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             draw(st.integers(kernel, 10)), draw(st.integers(kernel, 10)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(dtype)
    if draw(st.booleans()):
        x = np.round(x)  # whole numbers: many ties inside a window (the first maximum wins)
    return x[:, :, ::-1] if draw(st.booleans()) else x, kernel, stride, draw(st.booleans())


def _sizes(x, kernel_h, kernel_w, stride, padding):
    return (kernels.conv_output_size(x.shape[2], kernel_h, stride, padding),
            kernels.conv_output_size(x.shape[3], kernel_w, stride, padding))


@settings(max_examples=60, deadline=None)
@given(conv_geometries())
def test_numba_im2col_equals_reference(case):
    x, kernel_h, kernel_w, stride, padding = case
    sizes = _sizes(*case)
    contiguous = np.ascontiguousarray(x)
    shape = (x.shape[1] * kernel_h * kernel_w, x.shape[0] * sizes[0] * sizes[1])
    expected = reference.im2col(x, kernel_h, kernel_w, stride, padding, *sizes,
                                np.empty(shape, x.dtype))
    stale = np.full(shape, np.nan, x.dtype)  # the kernel must overwrite every entry
    got = numba_cpu.im2col(contiguous, kernel_h, kernel_w, stride, padding, *sizes, stale)
    assert got is stale
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(conv_geometries())
def test_numba_col2im_equals_reference(case):
    x, kernel_h, kernel_w, stride, padding = case
    sizes = _sizes(*case)
    rows = x.shape[1] * kernel_h * kernel_w
    cols = np.random.default_rng(0).standard_normal((rows, x.shape[0] * sizes[0] * sizes[1]))
    cols = cols.astype(x.dtype)
    args = (kernel_h, kernel_w, stride, padding, *sizes)
    expected = reference.col2im(cols, *args, np.empty(x.shape, x.dtype))
    got = numba_cpu.col2im(cols, *args, np.full(x.shape, np.nan, x.dtype))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(conv_geometries())
def test_im2col_and_col2im_are_adjoint(case):
    """<im2col(x), y> == <x, col2im(y)> for the dispatching functions of both backends."""
    x, kernel_h, kernel_w, stride, padding = case
    x = x.astype(np.float64)
    cols = kernels.im2col(x, kernel_h, kernel_w, stride, padding)
    y = np.random.default_rng(1).standard_normal(cols.shape)
    folded = kernels.col2im(y, x.shape, kernel_h, kernel_w, stride, padding)
    np.testing.assert_allclose(np.vdot(cols, y), np.vdot(x, folded), rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(pool_geometries())
def test_numba_max_pool_equals_reference_forward_and_backward(case):
    x, kernel, stride, ceil_mode = case
    out_h = kernels.pool_output_size(x.shape[2], kernel, stride, ceil_mode)
    out_w = kernels.pool_output_size(x.shape[3], kernel, stride, ceil_mode)
    expected, expected_arg = reference.max_pool2d(x, kernel, stride, out_h, out_w)
    got, got_arg = numba_cpu.max_pool2d(np.ascontiguousarray(x), kernel, stride, out_h, out_w)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_arg, expected_arg)
    grad = np.random.default_rng(2).standard_normal(expected.shape).astype(x.dtype)
    height, width = x.shape[2:]
    np.testing.assert_allclose(
        numba_cpu.max_pool2d_backward(grad, got_arg, height, width, kernel, stride),
        reference.max_pool2d_backward(grad, expected_arg, height, width, kernel, stride),
        rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(pool_geometries())
def test_numba_avg_pool_equals_reference_forward_and_backward(case):
    x, kernel, stride, ceil_mode = case
    out_h = kernels.pool_output_size(x.shape[2], kernel, stride, ceil_mode)
    out_w = kernels.pool_output_size(x.shape[3], kernel, stride, ceil_mode)
    expected = reference.avg_pool2d(x, kernel, stride, out_h, out_w)
    got = numba_cpu.avg_pool2d(np.ascontiguousarray(x), kernel, stride, out_h, out_w)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    grad = np.random.default_rng(3).standard_normal(expected.shape).astype(x.dtype)
    height, width = x.shape[2:]
    np.testing.assert_allclose(numba_cpu.avg_pool2d_backward(grad, height, width, kernel, stride),
                               reference.avg_pool2d_backward(grad, height, width, kernel, stride),
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 70),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_numba_gemm_equals_blas(m, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(numba_cpu.gemm(a, b), a @ b, rtol=tolerance, atol=tolerance * k)


def test_numba_gemm_crosses_block_boundaries(rng):
    """Sizes past GEMM_KC and GEMM_NC exercise the panel edges and the odd last row."""
    m, k, n = 131, numba_cpu.GEMM_KC + 37, numba_cpu.GEMM_NC + 29
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(numba_cpu.gemm(a, b), a @ b, rtol=1e-12, atol=1e-10)


def test_gemm_dispatch_accepts_non_contiguous_operands(cpu_backend, rng):
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((7, 6))
    np.testing.assert_allclose(kernels.gemm(a.T, b.T), a.T @ b.T, rtol=1e-12)


def test_im2col_matrix_product_equals_scipy_correlation(rng):
    """An independent oracle: W2 @ im2col(x) is scipy's valid cross-correlation."""
    x, weight = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    out = weight.reshape(4, -1) @ kernels.im2col(x, 3, 2)  # (C_out, B*OH*OW)
    out = out.reshape(4, 2, 5, 5).transpose(1, 0, 2, 3)  # (B, C_out, OH, OW)
    for b in range(2):
        for n in range(4):
            expected = scipy.signal.correlate(x[b], weight[n], mode="valid")[0]
            np.testing.assert_allclose(out[b, n], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("call, message", [
    (lambda: kernels.im2col(np.zeros((1, 1, 3, 3), np.float32), 5, 5), "larger than the padded"),
    (lambda: kernels.im2col(np.zeros((1, 3, 3), np.float32), 2, 2), "4 dimensions"),
    (lambda: kernels.im2col(np.zeros((1, 1, 3, 3), np.int64), 2, 2), "float32 or float64"),
    (lambda: kernels.im2col(np.zeros((1, 1, 3, 3)), 2, 2, stride=0), "stride must be a positive"),
    (lambda: kernels.col2im(np.zeros((4, 5)), (1, 1, 3, 3), 2, 2), r"expects cols of shape \(4, 4\)"),
    (lambda: kernels.max_pool2d(np.zeros((1, 1, 2, 2)), 3), "larger than the input"),
    (lambda: kernels.gemm(np.zeros((2, 3)), np.zeros((4, 2))), "do not fit"),
    (lambda: kernels.gemm(np.zeros((2, 3)), np.zeros((3, 2), np.float32)), "share a dtype"),
])
def test_kernel_arguments_are_validated_with_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.parametrize("size, kernel, stride, ceil_mode, expected", [
    (32, 3, 2, True, 16), (32, 3, 2, False, 15), (24, 2, 2, False, 12), (5, 3, 3, True, 2),
    (4, 2, 3, True, 2), (7, 1, 3, True, 3),
])
def test_pool_output_size_follows_caffe_in_ceil_mode(size, kernel, stride, ceil_mode, expected):
    assert kernels.pool_output_size(size, kernel, stride, ceil_mode) == expected


@settings(max_examples=60, deadline=None)
@given(conv_geometries(), st.integers(0, 2**16))
def test_numba_gathered_im2col_and_col2im_equal_reference(case, seed):
    x, kernel_h, kernel_w, stride, padding = case
    sizes = _sizes(*case)
    count = x.shape[1] * kernel_h * kernel_w
    picked = np.random.default_rng(seed).random(count) < 0.5
    picked[seed % count] = True
    rows = np.flatnonzero(picked).astype(np.int64)
    contiguous = np.ascontiguousarray(x)
    geometry = (kernel_h, kernel_w, stride, padding, *sizes)
    shape = (len(rows), x.shape[0] * sizes[0] * sizes[1])
    expected = reference.gathered_im2col(x, rows, *geometry, np.empty(shape, x.dtype))
    got = numba_cpu.gathered_im2col(contiguous, rows, *geometry, np.full(shape, np.nan, x.dtype))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, kernels.im2col(contiguous, kernel_h, kernel_w, stride,
                                                      padding)[rows])
    cols = np.random.default_rng(seed).standard_normal(expected.shape).astype(x.dtype)
    folded = reference.gathered_col2im(cols, rows, *geometry, np.empty(x.shape, x.dtype))
    np.testing.assert_allclose(
        numba_cpu.gathered_col2im(cols, rows, *geometry, np.full(x.shape, np.nan, x.dtype)),
        folded, rtol=1e-6, atol=1e-6)
    # the serial twins (worker threads, minissl.workers) run the same loop bodies
    np.testing.assert_array_equal(numba_cpu.gathered_im2col_serial(
        contiguous, rows, *geometry, np.full(shape, np.nan, x.dtype)), expected)
    np.testing.assert_allclose(numba_cpu.gathered_col2im_serial(
        cols, rows, *geometry, np.full(x.shape, np.nan, x.dtype)), folded, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        kernels.im2col(contiguous, kernel_h, kernel_w, stride, padding, serial=True)[rows],
        expected)


def test_gathered_rows_are_validated():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="increasing indices"):
        kernels.im2col(x, 2, 2, rows=[2, 1])
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        kernels.im2col(x, 2, 2, rows=[0, 4])


def test_a_window_larger_than_the_image_writes_only_its_own_patch_row():
    """A 3x3 window with padding 1 on 1x1 images: most patch rows are all padding, shifted by
    more than the block is long. Found by hypothesis: the shifted copy wrote zeros past its
    own row into the next one, so a row computed earlier came out 0."""
    x = np.array([[[[0.12573022]], [[-0.13210486]]]], dtype=np.float32)  # (1, 2, 1, 1)
    rows = np.array([0, 2, 4, 6, 7, 9, 12, 13, 17])
    expected = reference.gathered_im2col(x, rows, 3, 3, 1, 1, 1, 1, np.empty((9, 1), x.dtype))
    assert expected[7, 0] == x[0, 1, 0, 0]  # row 13: channel 1's only pixel
    for kernel in (numba_cpu.gathered_im2col, numba_cpu.gathered_im2col_serial):
        for _ in range(20):  # the parallel kernel's rows run in any order
            got = kernel(x, rows, 3, 3, 1, 1, 1, 1, np.full((9, 1), np.nan, x.dtype))
            np.testing.assert_array_equal(got, expected)


def test_kernels_run_as_plain_python_with_numba_disabled():
    """NUMBA_DISABLE_JIT=1 keeps every kernel working, for stepping through it."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from minissl.kernels import numba_cpu as n, numba_inference as i, reference as r\n"
        "x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))\n"
        "a = n.im2col(x, 3, 2, 2, 1, 3, 4, np.empty((12, 24)))\n"
        "assert np.array_equal(a, r.im2col(x, 3, 2, 2, 1, 3, 4, np.empty((12, 24))))\n"
        "assert np.allclose(n.col2im(a, 3, 2, 2, 1, 3, 4, np.empty(x.shape)),"
        " r.col2im(a, 3, 2, 2, 1, 3, 4, np.empty(x.shape)))\n"
        "same = n.im2col(x, 3, 3, 1, 1, 5, 6, np.empty((18, 60)))\n"
        "assert np.array_equal(same, r.im2col(x, 3, 3, 1, 1, 5, 6, np.empty((18, 60))))\n"
        "ones, zeros = np.ones(2), np.zeros(2)\n"
        "for a, b in zip(n.batch_norm_forward(x, ones, zeros, 1e-5),"
        " r.batch_norm_forward(x, ones, zeros, 1e-5)):\n"
        "    assert np.allclose(a, b)\n"
        "assert np.array_equal(n.relu_backward(x, n.relu_forward(x)), r.relu_backward(x, x))\n"
        "out, arg = n.max_pool2d(x, 2, 2, 2, 3)\n"
        "assert np.array_equal(out, r.max_pool2d(x, 2, 2, 2, 3)[0])\n"
        "assert np.allclose(n.gemm(x[0, 0], x[1, 0].T), x[0, 0] @ x[1, 0].T)\n"
        "rows, w2, bias = np.array([0, 4, 9, 17]), x[0, 0, :3, :4], np.ones(3)\n"
        "assert np.array_equal(n.gathered_im2col_serial(x, rows, 3, 3, 1, 1, 5, 6,"
        " np.empty((4, 60))), same[rows])\n"
        "assert np.allclose(i.conv_tiles(x, w2, rows, 3, 3, 1, 1, bias, 2, np.empty((2, 3, 5, 6))),"
        " r.conv_tiles(x, w2, rows, 3, 3, 1, 1, bias, 2, np.empty((2, 3, 5, 6))))\n"
        "import numba\n"
        "assert numba.config.DISABLE_JIT\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_im2col_and_col2im_write_into_the_given_buffers():
    """The convolution passes reused buffers as `out`; the result must land in them."""
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    buffer = np.full((27, 2 * 25), np.nan, np.float32)
    cols = kernels.im2col(x, 3, 3, 1, 1, out=buffer)
    assert cols is buffer
    np.testing.assert_array_equal(cols, kernels.im2col(x, 3, 3, 1, 1))
    image = np.full(x.shape, np.nan, np.float32)
    assert kernels.col2im(cols, x.shape, 3, 3, 1, 1, out=image) is image
    np.testing.assert_allclose(image, kernels.col2im(cols, x.shape, 3, 3, 1, 1), rtol=1e-6)


@pytest.mark.parametrize("out, message", [
    (np.empty((27, 49), np.float32), r"shape \(27, 50\)"),
    (np.empty((27, 50), np.float64), "float32 array"),
    (np.empty((50, 27), np.float32).T, "C-contiguous"),
])
def test_im2col_rejects_a_wrong_out_buffer(out, message):
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=message):
        kernels.im2col(x, 3, 3, 1, 1, out=out)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_numba_batch_norm_equals_reference(batch, channels, height, width, dtype, seed):
    if batch * height * width < 2:
        return  # one value per channel: ops.batch_norm refuses it before any kernel runs
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, channels, height, width)) * 3 + 1).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, channels).astype(dtype), rng.standard_normal(channels)
    beta = beta.astype(dtype)
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10}
    for got, expected in zip(numba_cpu.batch_norm_forward(x, gamma, beta, 1e-5),
                             reference.batch_norm_forward(x, gamma, beta, 1e-5)):
        np.testing.assert_allclose(got, expected, **tolerance)
    grad = rng.standard_normal(x.shape).astype(dtype)
    mean = x.mean(axis=(0, 2, 3))
    inv_std = (1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)).astype(dtype)
    for got, expected in zip(numba_cpu.batch_norm_backward(grad, x, mean, inv_std, gamma),
                             reference.batch_norm_backward(grad, x, mean, inv_std, gamma)):
        np.testing.assert_allclose(got, expected, **tolerance)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_numba_channel_affine_equals_reference_bit_for_bit(batch, channels, height, width, dtype,
                                                          seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, channels, height, width)) * 3 + 1).astype(dtype)
    scale, shift = (rng.standard_normal(channels).astype(dtype) for _ in range(2))
    np.testing.assert_array_equal(numba_cpu.channel_affine(x, scale, shift),
                                  reference.channel_affine(x, scale, shift))
    expected = x * scale[None, :, None, None] + shift[None, :, None, None]
    np.testing.assert_array_equal(kernels.channel_affine(x[:, :, ::-1], scale, shift),
                                  expected[:, :, ::-1])  # a strided view is made contiguous
    with pytest.raises(ValueError, match="must be"):
        kernels.channel_affine(x, scale[:1].repeat(channels + 1), shift)


@pytest.mark.parametrize("kernel, padding, height, width", [(3, 1, 8, 8), (5, 2, 7, 9), (1, 0, 4, 6)])
def test_numba_im2col_same_size_fast_path_equals_reference(kernel, padding, height, width):
    """Stride 1 with an output as large as the input takes the one-shifted-copy path."""
    rng = np.random.default_rng(kernel)
    x = rng.standard_normal((3, 4, height, width)).astype(np.float32)
    rows = np.flatnonzero(rng.random(4 * kernel * kernel) < 0.6).astype(np.int64)
    geometry = (kernel, kernel, 1, padding, height, width)
    shape = (len(rows), 3 * height * width)
    got = numba_cpu.gathered_im2col(x, rows, *geometry, np.full(shape, np.nan, np.float32))
    expected = reference.gathered_im2col(x, rows, *geometry, np.empty(shape, np.float32))
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_numba_relu_equals_reference(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(dtype)
    x[rng.integers(0, size, 3)] = [0.0, -np.inf, np.nan]  # the kink, an infinity, a NaN
    np.testing.assert_array_equal(numba_cpu.relu_forward(x), reference.relu_forward(x))
    grad = rng.standard_normal(size).astype(dtype)
    out = reference.relu_forward(x)
    np.testing.assert_array_equal(numba_cpu.relu_backward(grad, out),
                                  reference.relu_backward(grad, out))


@pytest.mark.parametrize("position", [0, 1, 3])
def test_max_pool_propagates_nan_in_both_variants(position):
    """A NaN anywhere in a window makes that window's maximum NaN, as in PyTorch."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x.reshape(-1)[[0, 1, 4, 5][position]] = np.nan  # inside the first 2x2 window
    for variant in (numba_cpu, reference):
        out, argmax = variant.max_pool2d(x, 2, 2, 2, 2)
        assert np.isnan(out[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == position
        np.testing.assert_array_equal(out[0, 0].reshape(-1)[1:], [7, 13, 15])


def _inference_case(case, filters, gathered, seed):
    """(x, rows, weight2, bias, output shape, (kh, kw, stride, padding)) of a random inference
    convolution: all shape columns, or (gathered) a random half of them, at least one."""
    x, kernel_h, kernel_w, stride, padding = case
    rng = np.random.default_rng(seed)
    count = x.shape[1] * kernel_h * kernel_w
    rows = np.arange(count)
    if gathered:
        picked = rng.random(count) < 0.5
        picked[seed % count] = True
        rows = np.flatnonzero(picked)
    weight2 = rng.standard_normal((filters, len(rows))).astype(x.dtype)
    bias = rng.standard_normal(filters).astype(x.dtype)
    shape = (x.shape[0], filters, *_sizes(*case))
    return x, rows, weight2, bias, shape, (kernel_h, kernel_w, stride, padding)


@settings(max_examples=60, deadline=None)
@given(conv_geometries(), st.integers(1, 5), st.integers(1, 4), st.booleans(),
       st.integers(0, 2**16))
def test_numba_conv_tiles_equals_reference(case, filters, runs, gathered, seed):
    """The per-image tile convolution (inference) on random shapes, strides, padding, kept
    rows and thread splits equals im2col + GEMM."""
    x, rows, weight2, bias, shape, geometry = _inference_case(case, filters, gathered, seed)
    got = numba_inference.conv_tiles(np.ascontiguousarray(x), weight2, rows, *geometry, bias, runs,
                               np.full(shape, np.nan, x.dtype))
    expected = reference.conv_tiles(x, weight2, rows, *geometry, bias, runs, np.empty(shape, x.dtype))
    tolerance = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)


@contextlib.contextmanager
def _splitting_every_image():
    """conv_shifted splits each image's output rows over the threads, however small."""
    threshold = numba_inference.SHIFTED_SPLIT_MACS
    numba_inference.SHIFTED_SPLIT_MACS = 0
    try:
        yield
    finally:
        numba_inference.SHIFTED_SPLIT_MACS = threshold


@settings(max_examples=120, deadline=None)
@given(st.one_of(conv_geometries(), conv_geometries(max_width=40)), st.integers(1, 20),
       st.integers(1, 4), st.booleans(), st.integers(0, 2**16))
def test_numba_conv_shifted_equals_reference(case, filters, runs, gathered, seed):
    """The shifted-runs convolution (inference) on random shapes, strides, padding, kept
    rows, filter counts (1-20: blocks of four, the ones left over one at a time), outputs
    narrower and wider than eight pixels (runs, or chunks of eight with the last one
    overlapping, eight or two chunks per step) and thread
    splits (over images, and over an image's chunks) equals its NumPy reference, and both
    equal im2col + GEMM."""
    x, rows, weight2, bias, shape, geometry = _inference_case(case, filters, gathered, seed)
    got = numba_inference.conv_shifted(np.ascontiguousarray(x), weight2, rows, *geometry, bias, runs,
                                 np.full(shape, np.nan, x.dtype))
    with _splitting_every_image():
        split = numba_inference.conv_shifted(np.ascontiguousarray(x), weight2, rows, *geometry, bias,
                                       runs + 1, np.full(shape, np.nan, x.dtype))
    expected = reference.conv_shifted(x, weight2, rows, *geometry, bias, runs,
                                      np.full(shape, np.nan, x.dtype))
    np.testing.assert_array_equal(split, got)  # the same sums, whichever thread does them
    by_gemm = reference.conv_tiles(x, weight2, rows, *geometry, bias, runs,
                                   np.empty(shape, x.dtype))
    tolerance = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(expected, by_gemm, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("filters, gathered, stride, padding, threads, size", [
    (1, False, 1, 0, 1, 14), (3, True, 1, 1, 2, 14), (6, False, 2, 1, 2, 14),
    (13, True, 1, 0, 3, 14), (5, False, 1, 0, 2, 24), (2, True, 1, 1, 1, 23)])
def test_numba_conv_shifted_sums_many_rows_in_blocks(filters, gathered, stride, padding,
                                                     threads, size):
    """Layers with more kept rows than SHIFTED_KC (here 20 channels x 5x5 = 500, or a random
    half) are summed a block of rows at a time, the partial sums parked in the output: equal
    to the NumPy reference, one image split over threads or not, with filters left over
    after the blocks of four and with output rows whose last chunk overlaps (20 and 21
    pixels: three chunks, the row's first repeated so that the overlapping two share a
    pair)."""
    rng = np.random.default_rng(filters)
    x = rng.standard_normal((2, 20, size, size)).astype(np.float32)
    count = 20 * 25
    rows = np.flatnonzero(rng.random(count) < 0.5) if gathered else np.arange(count)
    assert len(rows) > numba_inference.SHIFTED_KC
    weight2 = rng.standard_normal((filters, len(rows))).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    out_size = (size + 2 * padding - 5) // stride + 1
    shape = (2, filters, out_size, out_size)
    with _splitting_every_image():
        got = numba_inference.conv_shifted(x, weight2, rows, 5, 5, stride, padding, bias, threads,
                                     np.full(shape, np.nan, np.float32))
    expected = reference.conv_tiles(x, weight2, rows, 5, 5, stride, padding, bias, 1,
                                    np.empty(shape, np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["conv_tiles", "conv_shifted"])
def test_inference_kernel_arguments_are_validated(name):
    convolve = getattr(kernels, name)
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match=rf"{name}: weight2 \(3, 5\) must have one column per "
                                         r"row \(18\)"):
        convolve(x, np.zeros((3, 5), np.float32), 3, 3)
    with pytest.raises(TypeError, match=f"{name}: x is float32 but weight2 is float64"):
        convolve(x, np.zeros((3, 18)), 3, 3)
    with pytest.raises(ValueError, match=rf"{name}: bias must have shape \(3,\)"):
        convolve(x, np.zeros((3, 18), np.float32), 3, 3, bias=np.zeros(2, np.float32))


def test_the_shifted_kernel_runs_strided_padded_layers_under_ops():
    from minissl import Tensor, no_grad, ops

    x = Tensor(np.random.default_rng(0).standard_normal((2, 2, 9, 8)).astype(np.float32))
    weight = Tensor(np.random.default_rng(1).standard_normal((3, 2, 3, 3)).astype(np.float32))
    with no_grad():
        shifted = ops.conv2d(x, weight, stride=2, padding=1, algorithm="shifted")
        by_gemm = ops.conv2d(x, weight, stride=2, padding=1, algorithm="gemm")
    np.testing.assert_allclose(shifted.data, by_gemm.data, rtol=1e-5, atol=1e-5)


def test_a_convolution_without_autograd_takes_the_tile_kernel_and_agrees():
    """Under no_grad a small strided conv with a narrow output runs kernels.conv_tiles (no
    graph); with autograd it runs im2col + GEMM; both give the same output."""
    import minissl
    from minissl import Tensor, no_grad, ops

    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((3, 2, 9, 9)))
    weight = Tensor(rng.standard_normal((4, 2, 3, 3)), requires_grad=True)
    previous = minissl.get_backend()
    minissl.set_backend("numba")
    try:
        assert kernels.conv_algorithm(3, 4, 18, 5, 5, stride=2) == "tiles"
        assert kernels.conv_algorithm(100, 64, 576, 4, 4, stride=2) == "gemm"
        assert kernels.conv_algorithm(100, 4, 18, 4, 4) == "shifted"
        assert kernels.conv_algorithm(100, 50, 500, 8, 8) == "shifted"
        assert kernels.conv_algorithm(100, 32, 800, 16, 16) == "shifted"
        assert kernels.conv_algorithm(1, 96, 363, 55, 55, stride=4) == "shifted"
        trained = ops.conv2d(x, weight, None, 2, 1)
        with no_grad():
            inferred = ops.conv2d(x, weight, None, 2, 1)
    finally:
        minissl.set_backend(previous)
    assert trained.requires_grad and not inferred.requires_grad
    np.testing.assert_allclose(inferred.data, trained.data, rtol=1e-12, atol=1e-12)
