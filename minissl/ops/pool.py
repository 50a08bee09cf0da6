"""Pooling: max_pool2d, avg_pool2d (both with Caffe's ceil mode) and global_avg_pool2d.

The window loops live in `minissl.kernels`; these Functions only connect them to autograd.
Windows have no padding; with ceil_mode=True the last window may hang over the border and
only its in-image part counts (as in Caffe, whose cifar10_full net uses it).
"""

from minissl import kernels
from minissl.autograd import Function
from minissl.backend import xp_of
from minissl.tensor import Tensor


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, ceil_mode):
        out, argmax = kernels.max_pool2d(x, kernel, stride, ceil_mode)
        ctx.argmax, ctx.x_shape, ctx.window = argmax, x.shape, (kernel, stride)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # The gradient goes to the first maximum of each window (ties broken in row-major order).
        return (kernels.max_pool2d_backward(grad_out, ctx.argmax, ctx.x_shape, *ctx.window),)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, ceil_mode):
        ctx.x_shape, ctx.window = x.shape, (kernel, stride)
        return kernels.avg_pool2d(x, kernel, stride, ceil_mode)

    @staticmethod
    def backward(ctx, grad_out):
        return (kernels.avg_pool2d_backward(grad_out, ctx.x_shape, *ctx.window),)


class GlobalAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x_shape = x.shape
        return x.mean(axis=(2, 3))  # (B, C)

    @staticmethod
    def backward(ctx, grad_out):
        height, width = ctx.x_shape[2:]
        share = grad_out[:, :, None, None] / (height * width)  # (B, C, 1, 1)
        return (xp_of(grad_out).broadcast_to(share, ctx.x_shape).copy(),)  # (B, C, H, W)


def _check_image(name, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a Tensor")
    if x.ndim != 4:
        raise ValueError(f"{name} expects input (B, C, H, W), got shape {x.shape}")


def max_pool2d(x, kernel, stride=None, ceil_mode=False):
    """Max over kernel x kernel windows; stride defaults to kernel.

    Shapes: (B, C, H, W) -> (B, C, OH, OW), OH = (H - kernel) // stride + 1, or with
    ceil_mode=True ceil((H - kernel) / stride) + 1 (Caffe). Raises ValueError for a window
    larger than the input.
    """
    _check_image("max_pool2d", x)
    return MaxPool2d.apply(x, kernel=kernel, stride=kernel if stride is None else stride,
                           ceil_mode=ceil_mode)


def avg_pool2d(x, kernel, stride=None, ceil_mode=False):
    """Mean over kernel x kernel windows (in-image part only); stride defaults to kernel.

    Shapes: (B, C, H, W) -> (B, C, OH, OW) as in max_pool2d.
    """
    _check_image("avg_pool2d", x)
    return AvgPool2d.apply(x, kernel=kernel, stride=kernel if stride is None else stride,
                           ceil_mode=ceil_mode)


def global_avg_pool2d(x):
    """Mean over each whole feature map. Shapes: (B, C, H, W) -> (B, C)."""
    _check_image("global_avg_pool2d", x)
    return GlobalAvgPool2d.apply(x)
