"""Matrix products: matmul (with batch broadcasting) and the fused dense layer `linear`.

Both call the array module's matmul, i.e. the BLAS GEMM that NumPy (or cuBLAS via CuPy)
links against: for dense layers of MLP size it is the fastest GEMM we have.
"""

from minissl.autograd import Function, unbroadcast
from minissl.ops._coerce import as_tensor_pair


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return a @ b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.a, ctx.b
        grad_a = unbroadcast(grad_out @ b.swapaxes(-1, -2), a.shape) if ctx.needs_grad[0] else None
        grad_b = unbroadcast(a.swapaxes(-1, -2) @ grad_out, b.shape) if ctx.needs_grad[1] else None
        return grad_a, grad_b


class Linear(Function):
    """y = x W^T + b, one graph node instead of three (transpose, matmul, add)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.x, ctx.weight = x, weight
        out = x @ weight.T  # (B, out)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, grad_out):
        needs = ctx.needs_grad
        grad_x = grad_out @ ctx.weight if needs[0] else None  # (B, in)
        grad_weight = grad_out.T @ ctx.x if needs[1] else None  # (out, in)
        grad_bias = grad_out.sum(axis=0) if len(needs) > 2 and needs[2] else None  # (out,)
        return grad_x, grad_weight, grad_bias


def matmul(a, b):
    """Matrix product with broadcasting over leading batch axes.

    Shapes: (*, n, k), (*, k, m) -> (*, n, m). Both operands need at least 2 dimensions.
    Raises ValueError naming both shapes when they do not fit.
    """
    a, b = as_tensor_pair(a, b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul needs operands with >= 2 dimensions, got {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul shapes do not fit: {a.shape} @ {b.shape}")
    return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    """Dense layer y = x W^T + b.

    Shapes: x (B, in), weight (out, in), bias (out,) or None -> (B, out).
    Raises ValueError naming the shapes when they do not fit, TypeError when x and weight
    differ in dtype.
    """
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear expects x (B, in) and weight (out, in); got {x.shape} and {weight.shape}")
    if x.dtype != weight.dtype:
        raise TypeError(f"linear: x is {x.dtype} but weight is {weight.dtype} (one dtype, as in "
                        f"conv2d: convert the input)")
    if bias is None:
        return Linear.apply(x, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return Linear.apply(x, weight, bias)
