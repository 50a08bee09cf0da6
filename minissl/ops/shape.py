"""Shape ops: reshape and transpose (views in forward, the inverse view in backward), and
take (gather entries of axis 1; its backward scatters them back).
"""

import numpy as np

from minissl.autograd import Function
from minissl.backend import xp_of


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad_out):
        return (grad_out.reshape(ctx.shape),)


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
        return x.transpose(ctx.axes)

    @staticmethod
    def backward(ctx, grad_out):
        inverse = [0] * len(ctx.axes)
        for position, axis in enumerate(ctx.axes):
            inverse[axis] = position
        return (grad_out.transpose(inverse),)


def reshape(x, shape):
    """Reshape to `shape` (one entry may be -1). Shapes: (*S) -> shape, same size."""
    if isinstance(shape, int):
        shape = (shape,)
    try:
        return Reshape.apply(x, shape=tuple(shape))
    except ValueError as error:
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} to {tuple(shape)}") from error


def transpose(x, axes=None):
    """Permute axes (reverse them when `axes` is None). Shapes: (*S) -> permuted S."""
    if axes is not None and sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
        raise ValueError(f"axes {tuple(axes)} are not a permutation of the {x.ndim} axes of {x.shape}")
    return Transpose.apply(x, axes=axes)


class Take(Function):
    @staticmethod
    def forward(ctx, x, indices):
        ctx.x_shape, ctx.indices = x.shape, indices
        return x[:, indices]

    @staticmethod
    def backward(ctx, grad_out):
        grad = xp_of(grad_out).zeros(ctx.x_shape, dtype=grad_out.dtype)
        grad[:, ctx.indices] = grad_out  # indices are unique, so plain assignment scatters
        return (grad,)


def take(x, indices):
    """Keep the listed entries of axis 1 (features or channels), in the given order.

    Shapes: (B, F, *S) -> (B, len(indices), *S). `indices` must be unique and in range;
    raises ValueError otherwise. Used by compacted models to gather their kept inputs.
    """
    xp = xp_of(x.data)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(np.unique(indices)) != len(indices):
        raise ValueError("take needs a 1-D array of unique indices")
    if x.ndim < 2 or (len(indices) and (indices.min() < 0 or indices.max() >= x.shape[1])):
        raise ValueError(f"take: indices must lie in [0, {x.shape[1] if x.ndim > 1 else 0}) "
                         f"for input {x.shape}")
    return Take.apply(x, indices=xp.asarray(indices))
