import math

import numpy as np
import pytest

from minissl import optim
from minissl.nn import Parameter


def make_parameter():
    parameter = Parameter(np.array([1.0, -2.0]))
    parameter.grad = np.array([0.5, 0.5])
    return parameter


def test_sgd_momentum_and_weight_decay_match_hand_computed_values():
    w = make_parameter()
    optimizer = optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    optimizer.step()  # g = 0.5 + 0.01 w = [0.51, 0.48]; v = g; w -= 0.1 g
    np.testing.assert_allclose(w.data, [0.949, -2.048], rtol=1e-12)
    optimizer.step()  # g = [0.50949, 0.47952]; v = 0.9 [0.51, 0.48] + g = [0.96849, 0.91152]
    np.testing.assert_allclose(w.data, [0.852151, -2.139152], rtol=1e-12)


def test_nesterov_step_matches_hand_computed_values():
    w = make_parameter()
    optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True).step()
    np.testing.assert_allclose(w.data, [1 - 0.0969, -2 - 0.0912], rtol=1e-12)  # d = g + 0.9 g


def test_plain_sgd_and_skipped_parameters():
    w, untouched = make_parameter(), Parameter(np.array([3.0]))
    optim.SGD([w, untouched], lr=0.5).step()
    np.testing.assert_allclose(w.data, [0.75, -2.25])
    np.testing.assert_array_equal(untouched.data, [3.0])


def test_cosine_schedule_runs_from_base_to_final():
    optimizer = optim.SGD([make_parameter()], lr=0.1)
    schedule = optim.CosineSchedule(optimizer, total_steps=4)
    rates = []
    for _ in range(5):
        schedule.step()
        rates.append(optimizer.lr)
    expected = [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4, 4)]
    np.testing.assert_allclose(rates, expected, atol=1e-15)


def test_step_schedule_multiplies_by_gamma():
    optimizer = optim.SGD([make_parameter()], lr=1.0)
    schedule = optim.StepSchedule(optimizer, step_size=2, gamma=0.5)
    rates = []
    for _ in range(5):
        schedule.step()
        rates.append(optimizer.lr)
    assert rates == [1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -1}, ">= 0"), ({"lr": 0.1, "nesterov": True}, "nesterov"),
])
def test_bad_optimizer_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.SGD([make_parameter()], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
