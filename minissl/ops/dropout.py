"""Inverted dropout (Srivastava et al., JMLR 2014): zero each value with probability p and
scale the survivors by 1 / (1 - p), so evaluation needs no rescaling.
"""

from minissl.autograd import Function
from minissl.backend import xp_of
from minissl.tensor import Tensor


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, keep_scaled):
        ctx.keep_scaled = keep_scaled
        return x * keep_scaled

    @staticmethod
    def backward(ctx, grad_out):
        return (grad_out * ctx.keep_scaled,)


def dropout(x, p, rng, training=True):
    """Zero each element with probability p (drawn from `rng`), scale the rest by 1/(1-p).

    Shapes: (*S) -> (*S). `rng` is a numpy.random.Generator (the seed lives with the
    caller, e.g. nn.Dropout). Identity when not training or p == 0. Raises ValueError
    unless 0 <= p < 1.
    """
    if not isinstance(x, Tensor):
        raise TypeError("dropout expects a Tensor")
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    xp = xp_of(x.data)
    keep = rng.random(x.shape) >= p  # drawn on the CPU so a seed gives the same mask anywhere
    keep_scaled = xp.asarray(keep.astype(x.dtype) / x.dtype.type(1 - p))
    return Dropout.apply(x, keep_scaled=keep_scaled)
