import numpy as np
import pytest

from minissl import Tensor, compact, models, timing


def test_measure_calls_warmup_plus_repeats_and_reports_the_median():
    calls = []
    result = timing.measure(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9 and result.repeats == 7
    assert 0 <= result.best <= result.median


def test_compare_interleaves_the_calls():
    order = []
    first, second = timing.compare([lambda: order.append("a"), lambda: order.append("b")],
                                   repeats=3, warmup=0)
    assert order == ["a", "b", "b", "a", "a", "b"] and first.repeats == second.repeats == 3


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


def test_csr_forward_computes_the_layer(rng):
    """The unstructured baseline must compute the same thing it is compared with."""
    import scipy.sparse

    model = models.lenet(dtype=np.float64)
    x = Tensor(rng.random((2, 1, 28, 28)))
    for layer, inputs in ((model[0], x), (model[5], Tensor(rng.random((2, 800))))):
        weight = layer.weight.data.reshape(layer.weight.shape[0], -1)
        csr = scipy.sparse.csr_matrix(weight)
        got = timing._csr_forward(layer, csr, inputs).reshape(layer(inputs).shape)
        np.testing.assert_allclose(got, layer(inputs).data, rtol=1e-12, atol=1e-12)
