import numpy as np
import pytest

from minissl import Tensor, gradcheck, no_grad, ops


def _norm(training):
    def apply(x, gamma, beta):
        channels = x.shape[1]
        return ops.batch_norm(x, gamma, beta, np.zeros(channels), np.ones(channels), training)
    return apply


def test_batch_norm_train_mode_gradients(rng):
    x, gamma, beta = rng.standard_normal((3, 2, 3, 2)), rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    assert gradcheck(_norm(True), [x, gamma, beta])


def test_batch_norm_eval_mode_gradients(rng):
    x, gamma, beta = rng.standard_normal((3, 2, 3, 2)), rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    assert gradcheck(_norm(False), [x, gamma, beta])
    mean, var = np.array([0.7, -1.5]), np.array([2.5, 0.3])  # running statistics of a trained net
    assert gradcheck(lambda x, gamma, beta: ops.batch_norm(x, gamma, beta, mean, var, False),
                     [x, gamma, beta])


def test_batch_norm_train_output_has_zero_mean_unit_variance_per_channel(rng):
    x = rng.standard_normal((8, 3, 4, 4)) * 5 + 2
    out = _norm(True)(Tensor(x), Tensor(np.ones(3)), Tensor(np.zeros(3))).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-4)


def test_batch_norm_updates_running_statistics_like_pytorch(rng):
    x = rng.standard_normal((4, 2, 3, 3)) * 3 + 1
    running_mean, running_var = np.zeros(2), np.ones(2)
    with no_grad():
        ops.batch_norm(Tensor(x), Tensor(np.ones(2)), Tensor(np.zeros(2)), running_mean,
                       running_var, training=True, momentum=0.1)
    np.testing.assert_allclose(running_mean, 0.1 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(running_var, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1))


def test_batch_norm_eval_uses_running_statistics(rng):
    x = rng.standard_normal((2, 2, 3, 3))
    mean, var = np.array([1.0, -1.0]), np.array([4.0, 0.25])
    out = ops.batch_norm(Tensor(x), Tensor(np.ones(2)), Tensor(np.zeros(2)), mean, var,
                         training=False, eps=0.0).data
    np.testing.assert_allclose(out, (x - mean[:, None, None]) / np.sqrt(var)[:, None, None])


def test_batch_norm_refuses_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than one value per channel"):
        _norm(True)(Tensor(np.ones((1, 2, 1, 1))), Tensor(np.ones(2)), Tensor(np.zeros(2)))


def test_batch_norm_rejects_wrong_parameter_shape():
    with pytest.raises(ValueError, match=r"gamma must have shape \(2,\)"):
        _norm(True)(Tensor(np.ones((2, 2, 2, 2))), Tensor(np.ones(3)), Tensor(np.zeros(2)))
