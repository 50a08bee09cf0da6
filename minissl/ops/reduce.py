"""Reductions: sum, mean, max over an axis (or several, or all)."""

from minissl.autograd import Function
from minissl.backend import xp_of


def _normalize_axis(axis, ndim):
    """Return `axis` as a sorted tuple of non-negative ints (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


def _expand_reduced(grad_out, axes, keepdims):
    """Give grad_out back the reduced axes (as size 1) so that it broadcasts against the input."""
    if keepdims:
        return grad_out
    xp = xp_of(grad_out)
    return xp.expand_dims(grad_out, axes) if axes else grad_out


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, _normalize_axis(axis, x.ndim), keepdims
        return x.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad_out):
        grad = _expand_reduced(grad_out, ctx.axes, ctx.keepdims)
        return (xp_of(grad).broadcast_to(grad, ctx.shape).copy(),)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, _normalize_axis(axis, x.ndim), keepdims
        return x.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad_out):
        count = 1
        for a in ctx.axes:
            count *= ctx.shape[a]
        grad = _expand_reduced(grad_out, ctx.axes, ctx.keepdims) / count
        return (xp_of(grad).broadcast_to(grad, ctx.shape).copy(),)


class Max(Function):
    """Maximum over axes. Ties share the gradient equally (each of k maxima gets 1/k)."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.axes, ctx.keepdims = _normalize_axis(axis, x.ndim), keepdims
        out = x.max(axis=ctx.axes, keepdims=True)
        ctx.is_max = x == out
        return out if keepdims else out.squeeze(axis=ctx.axes)

    @staticmethod
    def backward(ctx, grad_out):
        grad = _expand_reduced(grad_out, ctx.axes, ctx.keepdims)
        ties = ctx.is_max.sum(axis=ctx.axes, keepdims=True).astype(grad.dtype)  # not int64:
        return (ctx.is_max * (grad / ties),)  # float32 / int64 would give float64


def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (int, tuple or None for all). Shapes: (*S) -> (*S without axis)."""
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over `axis` (int, tuple or None for all). Shapes: (*S) -> (*S without axis)."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    """Maximum over `axis`; tied maxima share the gradient. Shapes: (*S) -> (*S without axis)."""
    return Max.apply(x, axis=axis, keepdims=keepdims)
