"""Module and Parameter: containers of trainable tensors, with state_dict save/load.

A Module registers every Parameter, sub-Module and buffer assigned to it as an
attribute, in assignment order, so that `named_parameters()` is deterministic.
Buffers are non-trainable arrays that belong to the state (e.g. running statistics).
A registered slot keeps its kind: a parameter accepts only a new Parameter and a buffer only
an array (anything else is a TypeError saying what to do), so an assignment never silently
drops a parameter from `parameters()` or a buffer from `state_dict()`.
"""

import contextlib
import copy

import numpy as np

from minissl.backend import array_module, to_numpy, xp_of
from minissl.nn import protocol
from minissl.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that a Module trains (requires_grad is always True)."""

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class StateDictError(KeyError):
    """A state_dict does not fit a model: keys missing or unexpected, or shapes differ."""

    def __str__(self):
        return str(self.args[0])


class Module:
    """Base class of layers and models. Subclasses define `forward(self, *inputs)`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        if name in self._parameters and not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__}.{name} is a Parameter: assign a Parameter "
                            f"(minissl.nn.Parameter(array)) or set {name}.data = array, not "
                            f"{type(value).__name__}")
        if name in self._buffers:
            if not hasattr(value, "shape") or isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}.{name} is a buffer: assign an array, "
                                f"not {type(value).__name__}")
            object.__setattr__(self, name, value)  # stays a buffer, in its place
            return
        if name in self._modules and not isinstance(value, Module):
            self._modules.pop(name)  # a sub-module slot may be emptied or refilled freely
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """Store a non-trainable array (saved in state_dict) as attribute `name`."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def __call__(self, *inputs):
        tracer = protocol.active_tracer()
        if tracer is not None:  # minissl.compact (or timing) is following the forward pass
            return tracer.call(self, inputs)
        return self.forward(*inputs)

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ---- the layer protocol (minissl/nn/protocol.py) --------------------------
    # A layer sets `role` and defines what its role needs; these defaults say it did not.
    role = None
    plan_kind = None  # the "kind" of its entry in a compaction plan, for layers with weights

    def sample_shape(self, shape):
        """Shape of one sample after this layer, given the shape before it (no batch axis)."""
        raise protocol.undeclared(self, what="its output shape (sample_shape)")

    def input_mismatch(self, shape):
        """None when this layer takes one sample of `shape`, else what it takes (text)."""
        return None

    def fixed_input_shape(self):
        """The one sample shape this layer takes, when there is only one (Linear), else None."""
        return None

    def compacted(self, name, plan):
        """A new layer computing what this one computes with only what `plan` keeps
        (`name`: this layer's path in the original model)."""
        raise protocol.undeclared(self, name, "how to build its compacted copy (compacted)")

    # ---- traversal -----------------------------------------------------------
    def named_modules(self, prefix=""):
        """Yield (dotted name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = [(f"{name}.{child}" if name else child, sub)
                        for child, sub in module._modules.items()]
            stack.extend(reversed(children))

    def named_parameters(self):
        """Yield (dotted name, Parameter) in registration order, e.g. ("0.weight", W)."""
        for module_name, module in self.named_modules():
            for name, parameter in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self):
        """Return the list of all Parameters."""
        return [parameter for _, parameter in self.named_parameters()]

    def children(self):
        """Return the direct sub-modules, in registration order."""
        return list(self._modules.values())

    def train(self, mode=True):
        """Set training mode (True) or evaluation mode (False) on every module; returns self."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Switch to evaluation mode; returns self."""
        return self.train(False)

    def to_backend(self):
        """Move every parameter and buffer to the current backend's array module; returns self.

        After `minissl.set_backend("cupy")`, `model.to_backend()` puts the model on the GPU;
        after set_backend("numpy" or "numba") it brings it back. Gradients are cleared.
        """
        xp = array_module()
        for _, module in self.named_modules():
            for parameter in module._parameters.values():
                data = parameter.data
                parameter.data = to_numpy(data) if xp is np else xp.asarray(data)
                parameter.grad = None
            for name in module._buffers:
                array = getattr(module, name)
                object.__setattr__(module, name, to_numpy(array) if xp is np else xp.asarray(array))
        return self

    def zero_grad(self):
        """Clear the gradients of every parameter."""
        for parameter in self.parameters():
            parameter.grad = None

    def num_parameters(self):
        """Return the total number of scalar parameters."""
        return int(sum(parameter.size for parameter in self.parameters()))

    # ---- saving and loading --------------------------------------------------
    def state_dict(self):
        """Return {dotted name: NumPy copy} of every parameter and buffer."""
        state = {}
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, parameter in module._parameters.items():
                state[prefix + name] = to_numpy(parameter.data).copy()
            for name in module._buffers:
                state[prefix + name] = to_numpy(getattr(module, name)).copy()
        return state

    def load_state_dict(self, state):
        """Copy arrays from `state` into the parameters and buffers (in place, same dtype).

        Raises StateDictError naming every missing or unexpected key, or the first
        entry whose shape differs. Nothing is modified when an error is raised.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise StateDictError(f"state_dict does not fit {type(self).__name__}: "
                                 f"missing keys {missing}, unexpected keys {unexpected}")
        for key, array in own.items():
            if np.shape(state[key]) != array.shape:
                raise StateDictError(f"state_dict entry {key!r} has shape {np.shape(state[key])}, "
                                     f"the model expects {array.shape}")
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, parameter in module._parameters.items():
                parameter.data[...] = xp_of(parameter.data).asarray(state[prefix + name])
            for name in module._buffers:
                getattr(module, name)[...] = state[prefix + name]


@contextlib.contextmanager
def eval_mode(*models):
    """Every module of `models` in eval mode inside the block; each module's own mode (train
    or eval, set one by one or for the whole model) is restored afterwards."""
    modes = [(module, module.training) for model in models for _, module in model.named_modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            object.__setattr__(module, "training", mode)


class Channelwise(Module):
    """Base of layers that act on every channel on their own (the CHANNELWISE role).

    Channel c of the output depends only on channel c of the input, so compaction may drop a
    channel on both sides of such a layer. A subclass says whether it maps an all-zero channel
    to an all-zero channel (`maps_zero_to_zero`; ReLU yes, a sigmoid no): only then does the
    channel of a zero filter stay exactly zero behind it and can go. Defaults: shape kept,
    one feature per channel, no parameters (compaction copies the layer as it is).
    """

    role = protocol.Role.CHANNELWISE
    maps_zero_to_zero = None  # a subclass must say True or False

    def sample_shape(self, shape):
        return tuple(shape)

    def zero_channels(self, zero):
        """Which output channels are exactly zero, given the input channels that are.
        Shapes: zero (C,) bool -> (C,) bool."""
        if self.maps_zero_to_zero is None:
            raise protocol.undeclared(self, what="whether it maps zero to zero (maps_zero_to_zero)")
        return zero.copy() if self.maps_zero_to_zero else np.zeros_like(zero)

    def features_per_channel(self, shape):
        """How many output features each input channel becomes (Flatten: H*W; others 1)."""
        return 1

    def compacted(self, name, plan):
        if self._parameters or self._buffers:
            raise protocol.undeclared(self, name, "how to keep a subset of its channels "
                                      "(compacted)")
        return copy.deepcopy(self)
