"""Turn Python numbers and arrays into Tensors that match a Tensor operand's dtype."""

from minissl.backend import xp_of
from minissl.tensor import Tensor


def as_tensor_like(value, like):
    """Return `value` as a Tensor; non-Tensors take the dtype and array module of `like`."""
    if isinstance(value, Tensor):
        return value
    xp = xp_of(like.data)
    return Tensor(xp.asarray(value, dtype=like.dtype))


def as_tensor_pair(a, b):
    """Return (a, b) as Tensors; at least one of them must already be a Tensor."""
    if isinstance(a, Tensor):
        return a, as_tensor_like(b, a)
    return as_tensor_like(a, b), b
