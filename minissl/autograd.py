"""The autograd machinery: Function, Context, no_grad and unbroadcast.

A `Function` subclass defines one differentiable operation with two static methods
that work on raw arrays (NumPy or CuPy), never on Tensors:

    forward(ctx, *arrays, **options) -> array
    backward(ctx, grad_out) -> tuple with one gradient (or None) per input array

`Function.apply` is the only place that builds the graph: it unwraps the input
Tensors, runs `forward`, and wraps the result in a Tensor that remembers its
function, its context and its parents. `Tensor.backward` (tensor.py) walks the graph.

Reference: Baydin et al., "Automatic differentiation in machine learning: a survey",
JMLR 2018 (reverse mode, section 3.2).
"""

import contextlib
import threading


class _GradMode(threading.local):
    """Grad mode, one per thread (a new thread starts with it on): no_grad in one thread
    never turns the graph off in another."""
    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled():
    """Return True when new operations record the graph for backward (in this thread)."""
    return _grad_mode.enabled


@contextlib.contextmanager
def no_grad():
    """Context manager: operations inside it, in this thread, build no graph (evaluation,
    optimizer steps)."""
    previous = _grad_mode.enabled
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


class Context:
    """Scratch space that `forward` fills for `backward`.

    `needs_grad` is a tuple of booleans, one per input, so that `backward` can skip
    gradients nobody asked for. Anything else is stored as attributes by `forward`.
    """

    def __init__(self, needs_grad):
        self.needs_grad = needs_grad


class Function:
    """Base class of every differentiable operation (see the module docstring)."""

    @staticmethod
    def forward(ctx, *arrays, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on Tensors and, when grad mode is on, record it in the graph.

        `inputs` must all be Tensors; `options` are passed to `forward` unchanged.
        """
        needs_grad = tuple(tensor.requires_grad for tensor in inputs)
        record = _grad_mode.enabled and any(needs_grad)
        ctx = Context(needs_grad)
        data = cls.forward(ctx, *(tensor.data for tensor in inputs), **options)
        out = Tensor(data, requires_grad=record)
        if record:
            out.creator = cls
            out.ctx = ctx
            out.parents = inputs
        return out


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    Shapes: grad (*broadcast_shape) -> (*shape). Leading axes that broadcasting added are
    summed away; axes where `shape` has size 1 are summed with keepdims.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# Last: tensor.py imports the ops, which import Function from here (the import circle closes
# only once everything above is defined).
from minissl.tensor import Tensor  # noqa: E402
