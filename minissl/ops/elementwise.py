"""Elementwise ops with broadcasting: add, sub, mul, div, neg, pow, exp, log, relu.

Each backward returns gradients with the exact shape of its input (`unbroadcast`).
"""

from minissl import kernels
from minissl.autograd import Function, unbroadcast
from minissl.backend import xp_of
from minissl.ops._coerce import as_tensor_pair


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, grad_out):
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad_out, shape_a), unbroadcast(grad_out, shape_b)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, grad_out):
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad_out, shape_a), unbroadcast(-grad_out, shape_b)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return a * b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.a, ctx.b
        grad_a = unbroadcast(grad_out * b, a.shape) if ctx.needs_grad[0] else None
        grad_b = unbroadcast(grad_out * a, b.shape) if ctx.needs_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return a / b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.a, ctx.b
        grad_a = unbroadcast(grad_out / b, a.shape) if ctx.needs_grad[0] else None
        # d(a/b)/db = -a / b^2
        grad_b = unbroadcast(-grad_out * a / (b * b), b.shape) if ctx.needs_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad_out):
        return (-grad_out,)


class Pow(Function):
    """x ** p for a constant exponent p (a Python number)."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.x, ctx.exponent = x, exponent
        return x**exponent

    @staticmethod
    def backward(ctx, grad_out):
        x, p = ctx.x, ctx.exponent
        if p == 0:  # x ** 0 is constant: gradient 0 everywhere, also at x = 0 (not 0 * inf)
            return (xp_of(grad_out).zeros_like(grad_out),)
        return (grad_out * p * x ** (p - 1),)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.out = xp_of(x).exp(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad_out):
        return (grad_out * ctx.out,)


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return xp_of(x).log(x)

    @staticmethod
    def backward(ctx, grad_out):
        return (grad_out / ctx.x,)


class ReLU(Function):
    """max(x, 0). At the kink x == 0 the gradient is taken as 0 (the subgradient PyTorch uses)."""

    @staticmethod
    def forward(ctx, x):
        ctx.out = kernels.relu_forward(x)  # the output (kept anyway) instead of a mask
        return ctx.out

    @staticmethod
    def backward(ctx, grad_out):
        return (kernels.relu_backward(grad_out, ctx.out),)


def add(a, b):
    """a + b with broadcasting. Shapes: (*A), (*B) -> broadcast(A, B)."""
    return Add.apply(*as_tensor_pair(a, b))


def sub(a, b):
    """a - b with broadcasting. Shapes: (*A), (*B) -> broadcast(A, B)."""
    return Sub.apply(*as_tensor_pair(a, b))


def mul(a, b):
    """a * b with broadcasting. Shapes: (*A), (*B) -> broadcast(A, B)."""
    return Mul.apply(*as_tensor_pair(a, b))


def div(a, b):
    """a / b with broadcasting. Shapes: (*A), (*B) -> broadcast(A, B)."""
    return Div.apply(*as_tensor_pair(a, b))


def neg(x):
    """-x. Shapes: (*S) -> (*S)."""
    return Neg.apply(x)


def pow(x, exponent):
    """x ** exponent for a constant Python number. Shapes: (*S) -> (*S)."""
    if not isinstance(exponent, (int, float)):
        raise TypeError(f"pow takes a constant int or float exponent, got {type(exponent).__name__}")
    return Pow.apply(x, exponent=exponent)


def exp(x):
    """e ** x. Shapes: (*S) -> (*S)."""
    return Exp.apply(x)


def log(x):
    """Natural logarithm. Shapes: (*S) -> (*S)."""
    return Log.apply(x)


def relu(x):
    """max(x, 0), gradient 0 at x == 0. Shapes: (*S) -> (*S)."""
    return ReLU.apply(x)
