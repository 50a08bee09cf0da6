import numpy as np
import pytest

from minissl import Tensor, models
from minissl.nn import Linear, Module, Parameter, ReLU, Sequential, StateDictError


def test_named_parameters_follow_registration_order():
    model = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.num_parameters() == 4 * 3 + 3 + 3 * 2 + 2


def test_state_dict_round_trip_restores_outputs(rng):
    source, target = models.mlp((6, 5, 3), seed=1), models.mlp((6, 5, 3), seed=2)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    from minissl import Tensor
    assert not np.allclose(source(Tensor(x)).data, target(Tensor(x)).data)
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(source(Tensor(x)).data, target(Tensor(x)).data)


def test_state_dict_is_a_copy():
    model = Linear(2, 2)
    state = model.state_dict()
    state["weight"][...] = 99
    assert not np.any(model.weight.data == 99)


def test_missing_and_unexpected_keys_are_named():
    model = Linear(3, 2)
    state = model.state_dict()
    del state["bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(StateDictError, match=r"missing keys \['bias'\], unexpected keys \['extra'\]"):
        model.load_state_dict(state)


def test_shape_mismatch_is_named_and_changes_nothing():
    model = Linear(3, 2)
    before = model.state_dict()
    state = {"weight": np.ones((2, 3)), "bias": np.ones(5)}
    with pytest.raises(StateDictError, match=r"'bias' has shape \(5,\).*expects \(2,\)"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.weight.data, before["weight"])


def test_train_and_eval_reach_every_submodule():
    model = Sequential(Linear(2, 2), Sequential(ReLU(), Linear(2, 1)))
    model.eval()
    assert not any(module.training for _, module in model.named_modules())
    model.train()
    assert all(module.training for _, module in model.named_modules())


def test_zero_grad_clears_every_gradient():
    model = Linear(2, 2)
    for parameter in model.parameters():
        parameter.grad = np.ones_like(parameter.data)
    model.zero_grad()
    assert all(parameter.grad is None for parameter in model.parameters())


def test_buffers_are_saved_and_loaded():
    class WithBuffer(Module):
        def __init__(self):
            super().__init__()
            self.scale = Parameter(np.ones(2))
            self.register_buffer("running", np.zeros(2))

    model = WithBuffer()
    state = model.state_dict()
    assert set(state) == {"scale", "running"}
    state["running"] = np.array([1.0, 2.0])
    model.load_state_dict(state)
    np.testing.assert_array_equal(model.running, [1.0, 2.0])


def test_forgetting_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self):
            self.weight = Parameter(np.ones(1))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_assigning_a_tensor_to_a_parameter_slot_is_refused_not_dropped():
    """The parameter stays registered or the assignment fails clearly."""
    layer = Linear(3, 2)
    with pytest.raises(TypeError, match=r"weight is a Parameter: assign a Parameter"):
        layer.weight = Tensor(np.zeros((2, 3), np.float32))
    assert len(layer.parameters()) == 2
    replacement = Parameter(np.ones((2, 3), np.float32))
    layer.weight = replacement
    assert layer.parameters()[0] is replacement  # accepted, in its place


def test_assigning_to_a_buffer_keeps_it_in_the_state():
    from minissl.nn import BatchNorm2d

    norm = BatchNorm2d(2)
    norm.running_mean = np.full(2, 3.0, np.float32)
    np.testing.assert_array_equal(norm.state_dict()["running_mean"], [3.0, 3.0])
    with pytest.raises(TypeError, match="running_var is a buffer: assign an array"):
        norm.running_var = Tensor(np.ones(2))
