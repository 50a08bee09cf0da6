import numpy as np
import pytest
import scipy.signal

from minissl import Tensor, gradcheck, ops


@pytest.mark.parametrize("stride, padding, kernel", [(1, 0, (3, 3)), (2, 1, (3, 2)), (3, 2, (2, 3))])
def test_conv2d_gradients(cpu_backend, stride, padding, kernel, rng):
    x = rng.standard_normal((2, 3, 6, 7))
    weight = rng.standard_normal((4, 3) + kernel)
    bias = rng.standard_normal(4)
    conv = lambda x, w, b: ops.conv2d(x, w, b, stride=stride, padding=padding)  # noqa: E731
    assert gradcheck(conv, [x, weight, bias])


def test_conv2d_without_bias_gradients(cpu_backend, rng):
    x, weight = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 2, 2))
    assert gradcheck(lambda x, w: ops.conv2d(x, w, padding=1), [x, weight])


@pytest.mark.parametrize("padding, kernel", [(0, 3), (1, 3), (2, 3), (2, 5), (0, 1)])
def test_conv2d_gradients_through_the_flipped_filter_correlation(cpu_backend, padding, kernel,
                                                                 rng):
    """Stride 1 with C_out <= C_in: grad_x is the correlation of grad_out with the flipped
    filters (conv._grad_x_by_correlation), checked against finite differences."""
    from minissl.ops import conv

    assert conv._correlation_pays(4, 3, (kernel, kernel, 1, padding), None)
    x = rng.standard_normal((2, 4, 6, 7))
    weight = rng.standard_normal((3, 4, kernel, kernel))
    # atol 1e-7: the central difference of a loss near 50 carries about 1e-8 of rounding
    assert gradcheck(lambda x, w: ops.conv2d(x, w, padding=padding), [x, weight], atol=1e-7)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_flipped_filter_correlation_equals_col2im_on_random_shapes(monkeypatch, backend, rng):
    """Both ways to grad_x agree on random stride-1 geometries and chunkings."""
    import minissl
    from minissl.ops import conv

    previous = minissl.get_backend()
    minissl.set_backend(backend)
    try:
        for _ in range(12):
            kernel = int(rng.integers(1, 6))
            padding = int(rng.integers(0, kernel))
            c_in = int(rng.integers(1, 6))
            c_out = int(rng.integers(1, c_in + 1))
            height, width = (int(v) for v in rng.integers(kernel, kernel + 6, size=2))
            x = rng.standard_normal((int(rng.integers(1, 6)), c_in, height, width))
            weight = rng.standard_normal((c_out, c_in, kernel, kernel))
            monkeypatch.setattr(conv, "COLS_CHUNK_ELEMENTS", int(rng.integers(50, 2000)))
            grads = []
            for pays in (conv._correlation_pays, lambda *args: False):
                monkeypatch.setattr(conv, "_correlation_pays", pays)
                tensor = Tensor(x.copy(), requires_grad=True)
                out = ops.conv2d(tensor, Tensor(weight), padding=padding)
                out.backward(np.cos(np.arange(out.size)).reshape(out.shape))
                grads.append(tensor.grad)
            monkeypatch.undo()
            np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-10)
    finally:
        minissl.set_backend(previous)


def test_conv2d_equals_scipy_correlate_plus_bias(cpu_backend, rng):
    x, weight = rng.standard_normal((2, 3, 8, 9)), rng.standard_normal((5, 3, 3, 4))
    bias = rng.standard_normal(5)
    out = ops.conv2d(Tensor(x), Tensor(weight), Tensor(bias)).data
    for b in range(2):
        for n in range(5):
            expected = scipy.signal.correlate(x[b], weight[n], mode="valid")[0] + bias[n]
            np.testing.assert_allclose(out[b, n], expected, rtol=1e-10, atol=1e-10)


def test_conv2d_stride_and_padding_equal_scipy_on_the_padded_input_subsampled(cpu_backend, rng):
    x, weight = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    out = ops.conv2d(Tensor(x), Tensor(weight), stride=2, padding=1).data
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    for n in range(3):
        expected = scipy.signal.correlate(padded, weight[n], mode="valid")[0][::2, ::2]
        np.testing.assert_allclose(out[0, n], expected, rtol=1e-10, atol=1e-10)


def test_conv2d_keeps_float32(rng):
    x = Tensor(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))
    weight = Tensor(rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    assert ops.conv2d(x, weight).dtype == np.float32


@pytest.mark.parametrize("x_shape, w_shape, message", [
    ((1, 2, 5, 5), (3, 4, 3, 3), "input has 2 channels"),
    ((2, 5, 5), (3, 2, 3, 3), r"expects x \(B, C_in, H, W\)"),
    ((1, 1, 2, 2), (1, 1, 3, 3), "larger than the padded input"),
])
def test_conv2d_rejects_bad_shapes_with_clear_errors(x_shape, w_shape, message):
    with pytest.raises(ValueError, match=message):
        ops.conv2d(Tensor(np.ones(x_shape)), Tensor(np.ones(w_shape)))


def test_conv2d_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match="float32 but weight is float64"):
        ops.conv2d(Tensor(np.ones((1, 1, 3, 3), np.float32)), Tensor(np.ones((1, 1, 2, 2))))


def test_conv2d_gathered_gradients(cpu_backend, rng):
    x, weight2, bias = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    rows = np.array([0, 2, 3, 5, 8, 11, 17])
    conv = lambda x, w, b: ops.conv2d_gathered(x, w, rows, (3, 3), b, stride=2, padding=1)  # noqa: E731
    assert gradcheck(conv, [x, weight2, bias])


def test_conv2d_gathered_equals_conv2d_with_zero_columns(cpu_backend, rng):
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    rows = np.array([1, 4, 5, 9, 13, 20, 26])
    sparse = np.zeros_like(weight.reshape(4, -1))
    sparse[:, rows] = weight.reshape(4, -1)[:, rows]
    dense = ops.conv2d(Tensor(x), Tensor(sparse.reshape(weight.shape)), padding=1).data
    gathered = ops.conv2d_gathered(Tensor(x), Tensor(sparse[:, rows]), rows, (3, 3), padding=1).data
    np.testing.assert_allclose(gathered, dense, rtol=1e-12, atol=1e-12)


def test_take_gradients_and_errors(rng):
    assert gradcheck(lambda t: ops.take(t, [3, 0, 2]), [rng.standard_normal((2, 4, 3))])
    with pytest.raises(ValueError, match="unique"):
        ops.take(Tensor(np.ones((2, 4))), [1, 1])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ops.take(Tensor(np.ones((2, 4))), [4])


@pytest.mark.parametrize("stride, padding, gathered", [(1, 2, False), (2, 1, False), (1, 1, True)])
def test_chunks_side_by_side_equal_one_at_a_time_and_the_reference(monkeypatch, stride, padding,
                                                                   gathered, rng):
    """Forward and backward over many image chunks (a tiny chunk budget): on the worker
    threads (minissl.workers), one chunk at a time, and on the reference kernels."""
    import minissl
    from minissl import workers
    from minissl.ops import conv

    monkeypatch.setattr(conv, "COLS_CHUNK_ELEMENTS", 600)  # 1-2 images per chunk
    x = rng.standard_normal((9, 3, 7, 8)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    grad_out = None
    rows = np.array([0, 2, 3, 7, 8, 13, 20, 26]) if gathered else None

    def run(backend, side_by_side):
        nonlocal grad_out
        monkeypatch.setattr(conv, "_side_by_side", lambda xp: side_by_side)
        previous = minissl.get_backend()
        minissl.set_backend(backend)
        try:
            tensors = [Tensor(x.copy(), requires_grad=True), Tensor(bias, requires_grad=True)]
            if gathered:
                tensors.insert(1, Tensor(weight.reshape(4, -1)[:, rows], requires_grad=True))
                out = ops.conv2d_gathered(tensors[0], tensors[1], rows, (3, 3), tensors[2],
                                          stride, padding)
            else:
                tensors.insert(1, Tensor(weight, requires_grad=True))
                out = ops.conv2d(tensors[0], tensors[1], tensors[2], stride, padding)
            if grad_out is None:
                grad_out = rng.standard_normal(out.shape).astype(np.float32)
            out.backward(grad_out)
            return [out.data] + [tensor.grad for tensor in tensors]
        finally:
            minissl.set_backend(previous)

    if workers.chunk_workers() is None:
        pytest.skip("this NumPy's BLAS cannot limit threads per caller: no worker threads")
    chunks = conv._image_chunks(9, 8 if gathered else 27, 64, np)
    assert len(chunks) >= 4
    side_by_side = run("numba", True)
    for other in (run("numba", False), run("numpy", False)):
        for got, expected in zip(side_by_side, other):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_side_by_side_chunks_make_a_multiple_of_the_workers():
    from minissl import workers
    from minissl.ops import conv

    team = workers.worker_count()
    for batch, rows, pixels in [(128, 800, 256), (128, 75, 1024), (7, 800, 256), (1, 800, 256)]:
        chunks = conv._image_chunks(batch, rows, pixels, np)
        assert chunks[0][0] == 0 and chunks[-1][1] == batch
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        sizes = [stop - start for start, stop in chunks]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        if batch >= team:
            assert len(chunks) % team == 0


def test_a_forked_child_runs_chunks_side_by_side_on_its_own_workers(rng):
    """The parent's worker threads do not exist in a fork; the child must not wait on them."""
    import multiprocessing

    from minissl import workers

    if workers.chunk_workers() is None:
        pytest.skip("no worker threads with this NumPy's BLAS")
    workers.run_chunks(lambda start, stop, serial: start, [(0, 1), (1, 2)], True)  # pool up
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        starts = pool.apply_async(workers.run_chunks, (_chunk_start, [(0, 1), (1, 2), (2, 3)],
                                                       True)).get(timeout=60)
    assert starts == [0, 1, 2]


def _chunk_start(start, stop, serial):
    return start


def test_an_error_in_a_chunk_reaches_the_caller_and_the_workers_go_on():
    from minissl import workers

    if workers.chunk_workers() is None:
        pytest.skip("no worker threads with this NumPy's BLAS")
    ran = []

    def work(start, stop, serial):
        ran.append(start)
        if start == 0:
            raise ValueError("chunk 0 failed")
        return start

    with pytest.raises(ValueError, match="chunk 0 failed"):
        workers.run_chunks(work, [(index, index + 1) for index in range(50)], True)
    assert workers.run_chunks(lambda start, stop, serial: serial, [(0, 1), (1, 2)], True) == [
        True, True]


@pytest.mark.parametrize("filters", [1, 3, 4, 5, 6, 7, 9])
def test_filter_counts_padded_for_blas_give_the_unpadded_result(monkeypatch, cpu_backend, filters,
                                                                 rng):
    from minissl.ops import conv as conv_module
    padded = conv_module._padded_filters(np.ones((filters, 64)), np)
    assert padded.shape == (-(-filters // 4) * 4, 64)  # zero rows up to a multiple of four
    assert np.all(padded[:filters] == 1) and np.all(padded[filters:] == 0)
    assert conv_module._padded_filters(np.ones((filters, 63)), np).shape == (filters, 63)
    x = Tensor(rng.standard_normal((3, 8, 7, 7)))  # 8 channels x 3 x 3 = 72 columns: padded
    weight = Tensor(rng.standard_normal((filters, 8, 3, 3)))
    bias = Tensor(rng.standard_normal(filters))
    out = ops.conv2d(x, weight, bias, padding=1).data
    monkeypatch.setattr(conv_module, "GEMM_FILTER_MULTIPLE", 1)  # no padding
    np.testing.assert_allclose(out, ops.conv2d(x, weight, bias, padding=1).data, rtol=1e-12,
                               atol=1e-12)
