import numpy as np
import pytest

from minissl import Tensor, gradcheck, ops


def test_log_softmax_gradient(rng):
    assert gradcheck(ops.log_softmax, [rng.standard_normal((4, 5))])


def test_cross_entropy_gradient(rng):
    labels = np.array([0, 3, 1, 4])
    assert gradcheck(lambda logits: ops.cross_entropy(logits, labels), [rng.standard_normal((4, 5))])


def test_cross_entropy_value_matches_definition(rng):
    logits, labels = rng.standard_normal((6, 3)), rng.integers(0, 3, size=6)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(probabilities[np.arange(6), labels]).mean()
    np.testing.assert_allclose(ops.cross_entropy(Tensor(logits), labels).item(), expected, rtol=1e-12)


def test_huge_logits_do_not_overflow():
    logits = Tensor(np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32), requires_grad=True)
    loss = ops.cross_entropy(logits, np.array([0, 1]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logits.grad))
    np.testing.assert_allclose(loss.item(), 500.0, rtol=1e-6)


def test_log_softmax_rows_exponentiate_to_one(rng):
    out = ops.log_softmax(Tensor(rng.standard_normal((3, 7)) * 30))
    np.testing.assert_allclose(np.exp(out.data).sum(axis=1), 1.0)


@pytest.mark.parametrize("labels, error, message", [
    (np.array([0.0, 1.0]), TypeError, "integers"),
    (np.array([0, 1, 2]), ValueError, r"shape \(2,\)"),
    (np.array([0, 3]), ValueError, r"\[0, 3\)"),
    (np.array([-1, 0]), ValueError, r"\[0, 3\)"),
])
def test_bad_labels_are_clear_errors(labels, error, message):
    with pytest.raises(error, match=message):
        ops.cross_entropy(Tensor(np.zeros((2, 3))), labels)
