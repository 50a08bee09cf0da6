"""Batch normalization over (B, H, W) per channel, with running statistics.

Train mode (Ioffe & Szegedy 2015, Algorithm 1), per channel c:

    mean = E[x],  var = E[(x - mean)^2]   (biased, over B*H*W values)
    x_hat = (x - mean) / sqrt(var + eps),   y = gamma * x_hat + beta

and the running statistics move by `momentum` towards mean and the unbiased variance
(PyTorch's convention). Eval mode normalizes with the running statistics instead.
Backward in train mode (n = B*H*W values per channel, g = grad_y * gamma):

    grad_x = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)
"""

from minissl import kernels
from minissl.autograd import Function
from minissl.backend import xp_of
from minissl.tensor import Tensor

_AXES = (0, 2, 3)  # batch, height, width: everything except the channel


def _per_channel(vector):
    return vector.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)


class BatchNormTrain(Function):
    """The loops (statistics, normalization, both sums of backward) are kernels
    (`kernels.batch_norm_forward` / `_backward`); this Function keeps x, the mean and
    1/sqrt(var + eps) for backward, as PyTorch does, and recomputes x_hat from them."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, momentum, eps):
        xp = xp_of(x)
        out, mean, var = kernels.batch_norm_forward(x, gamma, beta, eps)  # var biased
        ctx.x, ctx.mean, ctx.gamma = x, mean, gamma
        ctx.inv_std = 1.0 / xp.sqrt(var + eps)  # (C,)
        count = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (count / (count - 1))  # unbiased, as in PyTorch
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(
            grad_out, ctx.x, ctx.mean, ctx.inv_std, ctx.gamma)
        dtype = ctx.gamma.dtype
        return (grad_x if ctx.needs_grad[0] else None, grad_gamma.astype(dtype, copy=False),
                grad_beta.astype(dtype, copy=False))


class BatchNormEval(Function):
    """Normalization with the running statistics: a fixed per-channel affine map,
    y = x * scale + shift with scale = gamma / sqrt(running_var + eps) and
    shift = beta - running_mean * scale, in one pass (kernels.channel_affine). Backward
    (rare: a frozen BatchNorm in a model that trains) rebuilds x_hat from x."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, eps):
        inv_std = 1.0 / xp_of(x).sqrt(running_var + eps)  # (C,)
        scale = gamma * inv_std
        ctx.x, ctx.mean, ctx.inv_std, ctx.scale = x, running_mean, inv_std, scale
        return kernels.channel_affine(x, scale, beta - running_mean * scale)

    @staticmethod
    def backward(ctx, grad_out):
        grad_x = grad_out * _per_channel(ctx.scale) if ctx.needs_grad[0] else None
        x_hat = (ctx.x - _per_channel(ctx.mean)) * _per_channel(ctx.inv_std)
        return grad_x, (grad_out * x_hat).sum(axis=_AXES), grad_out.sum(axis=_AXES)


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Normalize each channel of x, then scale by gamma and shift by beta.

    Shapes: x (B, C, H, W); gamma, beta (C,) Tensors; running_mean, running_var (C,)
    arrays -> (B, C, H, W). In training mode the batch statistics are used and the running
    arrays are updated in place (the only mutation); otherwise the running ones are used.
    Raises ValueError for mismatched shapes or a training batch with one value per channel.
    """
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"batch_norm expects a Tensor (B, C, H, W), got {getattr(x, 'shape', x)}")
    channels = x.shape[1]
    for name, value in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                        ("running_var", running_var)):
        if tuple(value.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},), got {value.shape}")
    if not training:
        return BatchNormEval.apply(x, gamma, beta, running_mean=running_mean,
                                   running_var=running_var, eps=eps)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    if count < 2:
        raise ValueError(f"batch_norm in training mode needs more than one value per channel, "
                         f"got input {x.shape}")
    return BatchNormTrain.apply(x, gamma, beta, running_mean=running_mean,
                                running_var=running_var, momentum=momentum, eps=eps)
