import numpy as np
import pytest

from minissl import Tensor, compact, kernels, models, nn, no_grad, timing


def test_measure_calls_warmup_plus_repeats_and_reports_the_median():
    calls = []
    result = timing.measure(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9 and result.repeats == 7
    assert 0 <= result.best <= result.median


def test_compare_interleaves_the_calls():
    order = []
    (first, second), samples = timing.compare(
        [lambda: order.append("a"), lambda: order.append("b")], repeats=3, warmup=0)
    assert order[:6] == ["a", "b", "b", "a", "a", "b"] and first.repeats == second.repeats == 3
    assert [len(times) for times in samples] == [3, 3]


class FakeClock:
    """timing's clock, advanced by the timed calls themselves: the timings do not depend on
    the machine."""

    now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def test_a_comparison_with_a_wide_spread_is_measured_again(clock):
    calls = []

    def jumpy():  # every other call 10x slower: an IQR far wider than MAX_SPREAD
        calls.append(1)
        clock.now += 0.002 if len(calls) % 2 else 0.0002

    (result,), _ = timing.compare([jumpy], repeats=8, warmup=0)
    assert len(calls) == 8 * timing.MAX_ATTEMPTS
    assert result.spread > timing.MAX_SPREAD  # still wide: kept, with its spread, not hidden
    steady = []

    def even():
        steady.append(1)
        clock.now += 0.002

    timing.compare([even], repeats=8, warmup=0)
    assert len(steady) == 8


def test_compare_in_bursts_times_back_to_back_calls_per_sample(clock):
    order = []

    def slow():  # 1 ms a call: bursts of 5 fill the 5 ms asked for
        order.append("slow")
        clock.now += 1e-3

    def fast():  # 0.01 ms a call: 500 would fill them, MAX_BURST is the cap
        order.append("fast")
        clock.now += 1e-5

    (slow_time, fast_time), samples = timing.compare([slow, fast], repeats=3, warmup=1,
                                                     burst_seconds=5e-3)
    assert order[:2] == ["slow", "fast"]  # the warm-up calls
    timed = order[2:]
    burst = timing.MAX_BURST
    assert timed[:5] == ["slow"] * 5 and timed[5:5 + burst] == ["fast"] * burst
    assert timed.count("slow") == 3 * 5 and timed.count("fast") == 3 * timing.MAX_BURST
    assert slow_time.median == pytest.approx(1e-3) and fast_time.median == pytest.approx(1e-5)
    assert [len(times) for times in samples] == [3, 3]


def test_timing_and_ratio_carry_their_quartiles():
    result = timing.Timing.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (result.q1, result.median, result.q3, result.best) == (2.0, 3.0, 4.0, 1.0)
    assert result.spread == pytest.approx(2 / 3)
    ratio = timing.Ratio.of([2.0, 4.0, 6.0], [1.0, 1.0, 1.0])
    assert (ratio.q1, ratio.median, ratio.q3) == (3.0, 4.0, 5.0)


@pytest.mark.parametrize("speedup, quartiles, flop_pct, flagged", [
    (73.02, (60.0, 80.0), 10.03, "73.02x is above its FLOP-ideal 9.97x"),  # an outlier seen in a real run
    (9.5, (9.0, 10.0), 10.03, None),        # near its ideal: a result
    (1.55, (1.4, 1.7), 100.0, "unchanged, yet timed at 1.55x"),
    (1.08, (1.05, 1.1), 100.0, None),       # within the noise band
    (0.8, (0.7, 1.05), 100.0, None),        # its own spread covers 1.00x
])
def test_speedups_the_flops_cannot_explain_are_flagged(speedup, quartiles, flop_pct, flagged):
    flags = timing.speedup_flags(speedup, quartiles, flop_pct)
    assert flags == ([flagged] if flagged else [])


def test_measure_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats >= 1"):
        timing.measure(lambda: None, repeats=0)


def test_layer_speed_reports_the_plans_flops_and_positive_times():
    model = models.lenet()
    model[0].weight.data[10:], model[0].bias.data[10:] = 0, 0
    _, plan = compact.compact(model, (1, 28, 28))
    x = Tensor(np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32))
    speed = timing.layer_speed("0", model[0], plan, x, repeats=3, warmup=1)
    assert speed.flop_pct == pytest.approx(50.0)
    assert speed.ideal_speedup == pytest.approx(2.0)
    assert min(speed.dense_s, speed.compact_s, speed.csr_s) > 0
    assert speed.efficiency == pytest.approx(speed.speedup / 2.0)
    assert all(path in kernels.ALGORITHMS for path in speed.paths)  # both convs were tuned
    assert model[0].algorithms.get(4) == speed.paths[0]


def test_csr_forward_computes_the_layer(rng):
    """The unstructured baseline must compute the same thing it is compared with."""
    import scipy.sparse

    model = models.lenet(dtype=np.float64)
    x = Tensor(rng.random((2, 1, 28, 28)))
    for layer, inputs in ((model[0], x), (model[5], Tensor(rng.random((2, 800))))):
        weight = layer.weight.data.reshape(layer.weight.shape[0], -1)
        csr = scipy.sparse.csr_matrix(weight)
        got = layer.csr_forward(csr, inputs).reshape(layer(inputs).shape)
        np.testing.assert_allclose(got, layer(inputs).data, rtol=1e-12, atol=1e-12)


def _lenet_with_shape_columns_removed():
    """A LeNet whose conv2 keeps 40 of its 500 shape columns, and its compacted copy (conv2 a
    GatheredConv2d)."""
    model = models.lenet()
    conv2 = model[2].weight.data.reshape(50, -1)  # (C_out, C_in*KH*KW)
    conv2[:, 40:] = 0
    small, _ = compact.compact(model, (1, 28, 28))
    return model, small


def test_tune_convolutions_picks_a_path_per_conv_layer_and_batch_size(cpu_backend):
    model, small = _lenet_with_shape_columns_removed()
    x = Tensor(np.random.default_rng(0).random((6, 1, 28, 28)).astype(np.float32))
    choices = timing.tune_convolutions(small, x, repeats=2, warmup=1)
    convs = [layer for _, layer in small.named_modules() if hasattr(layer, "algorithms")]
    if cpu_backend == "numpy":  # no tile kernel there: nothing to choose
        assert choices == [] and all(layer.algorithms == {} for layer in convs)
        return
    assert [choice.layer for choice in choices] == ["0", "2"]
    assert any(isinstance(layer, nn.GatheredConv2d) for layer in convs)
    assert all(layer.algorithms == {} for layer in convs)  # the tuner changes nothing
    timing.apply_conv_choices(small, choices)
    for choice, layer in zip(choices, convs):
        assert choice.batch == 6 and layer.algorithms == {6: choice.algorithm}
        assert set(choice.seconds) == {"gemm", "tiles", "shifted"}
        assert choice.algorithm == min(choice.seconds, key=choice.seconds.get)
    assert all("forward" not in vars(layer) for _, layer in small.named_modules())
    assert timing.tune_convolutions(small, x, repeats=1, warmup=0) == []  # tuned: kept
    assert [layer.algorithms for layer in convs] == [{6: choice.algorithm} for choice in choices]
    again = timing.tune_convolutions(small, x, repeats=1, warmup=0, retune=True)
    assert [choice.layer for choice in again] == ["0", "2"]


def test_every_inference_path_computes_the_same_convolution(rng):
    """Whatever tuning picks, the output is the layer's function (to float32 rounding)."""
    _, small = _lenet_with_shape_columns_removed()
    x = Tensor(rng.random((5, 1, 28, 28)).astype(np.float32))
    outputs = []
    with no_grad():
        for algorithm in ("gemm", "tiles", "shifted"):
            for _, layer in small.named_modules():
                if hasattr(layer, "algorithms"):
                    layer.algorithms[5] = algorithm
            outputs.append(small(x).data)
    for output in outputs[1:]:
        np.testing.assert_allclose(output, outputs[0], rtol=1e-4, atol=1e-5)


def test_tune_convolutions_finds_the_convs_inside_residual_blocks():
    model = models.resnet_cifar(depth=8)
    x = Tensor(np.random.default_rng(1).random((2, 3, 32, 32)).astype(np.float32))
    choices = timing.tune_convolutions(model, x, repeats=1, warmup=0)
    names = [choice.layer for choice in choices]
    assert len(names) == 1 + 3 * 2 + 2  # stem, two per block, two projection shortcuts
    assert all(set(choice.seconds) == {"gemm", "tiles", "shifted"} for choice in choices)
    assert any("branch" in name for name in names) and any("shortcut" in name for name in names)


def test_tune_convolutions_restores_the_layers_when_the_model_fails():
    model = models.lenet()
    with pytest.raises(ValueError, match="expects input"):
        timing.tune_convolutions(model, Tensor(np.zeros((2, 3, 28, 28), np.float32)))
    assert all("forward" not in vars(layer) for _, layer in model.named_modules())


def test_a_choice_for_a_layer_the_model_lacks_is_refused():
    choice = timing.ConvChoice("9", 4, "gemm", {"gemm": 1.0})
    with pytest.raises(KeyError, match="no conv layer named '9'"):
        timing.apply_conv_choices(models.lenet(), [choice])


def test_speed_comparisons_leave_every_module_in_its_own_mode():
    model = models.resnet_cifar(depth=8)
    model.train()
    model[1].eval()  # one module in eval mode on purpose
    small, plan = compact.compact(model, (3, 32, 32))
    x = Tensor(np.random.default_rng(2).random((2, 3, 32, 32)).astype(np.float32))
    modes = [module.training for _, module in model.named_modules()]
    timing.network_speed(model, small, x, repeats=2, warmup=0)
    timing.layer_speeds(model, plan, x, layers=["0"], repeats=2, warmup=0)
    assert [module.training for _, module in model.named_modules()] == modes


def test_explain_says_which_path_runs_and_why():
    model = models.lenet()
    text = kernels.explain(model[0], (100, 1, 28, 28))
    assert text.startswith("shifted (100 x (20 x 25) on 24 x 24, stride 1): the cost model")
    assert "24 >= 8 pixels wide" in text
    assert kernels.explain(model[0], (100, 1, 28, 28), training=True).startswith("gemm")
    assert "numpy backend" in kernels.explain(model[0], (1, 1, 28, 28), backend="numpy")
    narrow = nn.Conv2d(64, 64, 3, stride=2, padding=1)
    assert kernels.explain(narrow, (100, 64, 8, 8)).startswith("gemm (100 x (64 x 576) on 4 x 4")
    assert kernels.explain(narrow, (3, 64, 8, 8)).startswith("tiles")
    narrow.algorithms[3] = "shifted"
    assert "chosen for batch 3 by timing" in kernels.explain(narrow, (3, 64, 8, 8))


def test_the_choice_knows_the_shifted_kernels_width():
    from minissl.kernels import choice, numba_inference

    assert choice.SHIFTED_MIN_WIDTH == numba_inference.LANES


def test_an_unknown_conv_algorithm_is_named_in_the_error():
    from minissl import ops

    x, weight = Tensor(np.zeros((1, 1, 6, 6))), Tensor(np.zeros((2, 1, 3, 3)))
    with no_grad(), pytest.raises(ValueError, match="'fast'"):
        ops.conv2d(x, weight, algorithm="fast")
