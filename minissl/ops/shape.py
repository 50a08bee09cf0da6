"""Shape ops: reshape and transpose (views in forward, the inverse view in backward)."""

from minissl.autograd import Function


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
