"""Differentiable operations on Tensors, one file per family.

elementwise: add, sub, mul, div, neg, pow, exp, log, relu
reduce:      sum, mean, max
shape:       reshape, transpose
matmul:      matmul, linear
loss:        log_softmax, cross_entropy
"""

from minissl.ops.elementwise import add, div, exp, log, mul, neg, pow, relu, sub
from minissl.ops.loss import cross_entropy, log_softmax
from minissl.ops.matmul import linear, matmul
from minissl.ops.reduce import max, mean, sum
from minissl.ops.shape import reshape, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu",
    "sum", "mean", "max", "reshape", "transpose", "matmul", "linear",
    "log_softmax", "cross_entropy",
]
