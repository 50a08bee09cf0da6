"""Tensor: an array plus what reverse-mode autograd needs.

This module owns the Tensor type and `Tensor.backward`, the iterative walk over the
graph. The operations themselves live in `minissl.ops`; the graph is recorded by
`Function.apply` in `minissl.autograd`. Arithmetic operators (`a + b`, `a @ b`, ...)
forward to `minissl.ops`.

dtype rule, the same for every op and layer: a Tensor holds float32 or float64 (float64
works everywhere, for gradcheck); Python numbers and lists become float32 unless `dtype` is
given. An integer or bool array (uint8 pixels, int64 labels) is refused unless `dtype` says
what to convert it to: images straight from a dataset are 0..255 and must be scaled first
(minissl.data.to_float_images), and converting them silently would feed a model logits a
hundred times too large. Anything else (float16, complex, object arrays) is refused with a
TypeError, never silently converted. Ops refuse to mix float32 and float64 operands where one
would be converted (conv2d, linear).
"""

import numpy as np

from minissl.backend import array_module, to_numpy, xp_of

DEFAULT_DTYPE = np.float32


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_array(data, dtype):
    """Return `data` as a NumPy or CuPy array following the module's dtype rule.

    Raises TypeError for data that is not numeric (object arrays, e.g. from a list holding
    None), complex, or a float type other than float32/float64 (float16: convert it first).
    """
    if isinstance(data, Tensor):
        raise TypeError("Tensor(data) takes an array, not a Tensor; use tensor.detach()")
    xp = xp_of(data) if hasattr(data, "dtype") else array_module()
    array = xp.asarray(data)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"Tensor data must be numeric (float, int or bool), got dtype "
                        f"{array.dtype}" + (" (a list holding None or mixed objects?)"
                                            if array.dtype.kind == "O" else ""))
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif array.dtype.kind != "f":
        if hasattr(data, "dtype") and getattr(data, "ndim", 0) > 0:
            raise TypeError(f"Tensor got an array of {array.dtype}: scale integer images first "
                            f"(minissl.data.to_float_images: uint8 0..255 -> float32 0..1), or "
                            f"pass dtype=np.float32 to convert the values as they are")
        array = array.astype(DEFAULT_DTYPE)  # Python ints, bools and lists become float32
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"minissl computes in float32 or float64, got {array.dtype}; convert "
                        f"first, e.g. array.astype(np.float32)")
    return array


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Attributes:
        data:          the array (NumPy or CuPy)
        grad:          array of the same shape, filled by backward() (leaves only)
        requires_grad: whether gradients flow to this tensor
        creator:       the Function class that produced it (None for a leaf)
        ctx:           what that Function saved for backward
        parents:       tuple of input Tensors of that Function
    """

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self.ctx = None
        self.parents = ()

    # ---- plain array facts -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self.creator.__name__}" if self.creator is not None else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad}{op})"

    def numpy(self):
        """Return the data as a NumPy array (copied from the GPU when needed)."""
        return to_numpy(self.data)

    def item(self):
        """Return the value of a one-element tensor as a Python number."""
        return self.data.item()

    def detach(self):
        """Return a new leaf Tensor sharing this data, outside any graph."""
        return Tensor(self.data)

    # ---- backward ------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad.

        `grad` defaults to 1 for a one-element tensor; otherwise it must have self's
        shape. The graph is walked in reverse topological order, found without
        recursion so that deep networks do not hit Python's recursion limit.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without grad needs a one-element tensor, got shape "
                                 f"{self.shape}")
            grad = xp_of(self.data).ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else grad
        if grad.shape != self.shape:
            raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")
        pending = {id(self): grad}
        for node in reversed(_topological_order(self)):
            node_grad = pending.pop(id(node), None)
            if node_grad is None:
                continue
            if node.creator is None:
                # a copy: one array can reach two leaves (x + y passes grad_out to both), and
                # a leaf must own its gradient so that updating it in place touches no other
                node.grad = node_grad.copy() if node.grad is None else node.grad + node_grad
                continue
            parent_grads = node.creator.backward(node.ctx, node_grad)
            for parent, parent_grad in zip(node.parents, parent_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                pending[key] = parent_grad if key not in pending else pending[key] + parent_grad

    # ---- operators (implemented in minissl.ops) ------------------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pow__(self, exponent):
        return _ops.pow(self, exponent)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    @property
    def T(self):
        return _ops.transpose(self)

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def relu(self):
        return _ops.relu(self)


def _topological_order(root):
    """Return every tensor reachable from `root`, parents before children (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node.parents:
            if id(parent) not in visited:
                stack.append((parent, False))
    return order


# Imported last: minissl.ops builds on Tensor, and Tensor's operators call minissl.ops.
from minissl import ops as _ops  # noqa: E402
