"""2-D convolution (cross-correlation, as in every deep-learning framework) via im2col + GEMM.

Forward, for W2 = weight.reshape(C_out, C_in*KH*KW) (rows = filters, columns = shape
fibers (c, kh, kw), DESIGN.md "Weight views and groups"):

    cols = im2col(x)                 (C_in*KH*KW, B*OH*OW)
    out  = W2 @ cols + b             (C_out, B*OH*OW) -> (B, C_out, OH, OW)

Backward, with G = grad_out as (C_out, B*OH*OW):

    grad_W2 = G @ cols.T,   grad_b = G summed over columns,   grad_x = col2im(W2.T @ G)

The GEMMs go through `kernels.matmul` (BLAS); im2col/col2im through the backend's kernels.
Reference: Chellapilla et al., "High performance convolutional neural networks for document
processing", 2006 (convolution unrolled into a matrix product); Jia et al., Caffe, 2014.
"""

from minissl import kernels
from minissl.autograd import Function
from minissl.backend import xp_of
from minissl.tensor import Tensor


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, *bias, stride, padding):
        xp = xp_of(x)
        c_out, _, kernel_h, kernel_w = weight.shape
        batch = x.shape[0]
        out_h = kernels.conv_output_size(x.shape[2], kernel_h, stride, padding)
        out_w = kernels.conv_output_size(x.shape[3], kernel_w, stride, padding)
        cols = kernels.im2col(x, kernel_h, kernel_w, stride, padding)  # (C_in*KH*KW, B*OH*OW)
        weight2 = weight.reshape(c_out, -1)  # (C_out, C_in*KH*KW)
        out = kernels.matmul(weight2, cols)  # (C_out, B*OH*OW)
        if bias:
            out += bias[0][:, None]
        ctx.cols, ctx.weight2, ctx.x_shape = cols, weight2, x.shape
        ctx.geometry = (kernel_h, kernel_w, stride, padding)
        # (C_out, B*OH*OW) -> (C_out, B, OH*OW) -> (B, C_out, OH*OW) -> (B, C_out, OH, OW)
        out = out.reshape(c_out, batch, out_h * out_w).transpose(1, 0, 2)
        return xp.ascontiguousarray(out).reshape(batch, c_out, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        xp = xp_of(grad_out)
        batch, c_out = grad_out.shape[:2]
        # (B, C_out, OH, OW) -> (C_out, B, OH*OW) -> (C_out, B*OH*OW)
        grad2 = xp.ascontiguousarray(grad_out.reshape(batch, c_out, -1).transpose(1, 0, 2))
        grad2 = grad2.reshape(c_out, -1)
        needs = ctx.needs_grad
        grad_x = grad_weight = grad_bias = None
        if needs[0]:
            grad_cols = kernels.matmul(ctx.weight2.T, grad2)  # (C_in*KH*KW, B*OH*OW)
            grad_x = kernels.col2im(grad_cols, ctx.x_shape, *ctx.geometry)  # (B, C_in, H, W)
        if needs[1]:
            kernel_h, kernel_w = ctx.geometry[:2]
            grad_weight = kernels.matmul(grad2, ctx.cols.T)  # (C_out, C_in*KH*KW)
            grad_weight = grad_weight.reshape(c_out, -1, kernel_h, kernel_w)  # (C_out, C_in, KH, KW)
        if len(needs) > 2 and needs[2]:
            grad_bias = grad2.sum(axis=1)  # (C_out,)
        return grad_x, grad_weight, grad_bias


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation of a batch of images with a bank of filters.

    Shapes: x (B, C_in, H, W), weight (C_out, C_in, KH, KW), bias (C_out,) or None
    -> (B, C_out, OH, OW) with OH = (H + 2*padding - KH) // stride + 1 (likewise OW).
    dtype: x and weight must share float32 or float64. Raises ValueError naming the shapes
    when the channels do not match or the kernel does not fit the padded input.
    """
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise TypeError("conv2d expects Tensors for x and weight")
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d expects x (B, C_in, H, W) and weight (C_out, C_in, KH, KW), "
                         f"got {x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight {weight.shape} "
                         f"expects {weight.shape[1]}")
    if x.dtype != weight.dtype:
        raise TypeError(f"conv2d: x is {x.dtype} but weight is {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding)
