"""Differentiable operations on Tensors, one file per family.

elementwise: add, sub, mul, div, neg, pow, exp, log, relu
reduce:      sum, mean, max
shape:       reshape, transpose, take
matmul:      matmul, linear
loss:        log_softmax, cross_entropy
conv:        conv2d, conv2d_gathered
pool:        max_pool2d, avg_pool2d, global_avg_pool2d
norm:        batch_norm
dropout:     dropout
"""

from minissl.ops.conv import conv2d, conv2d_gathered
from minissl.ops.dropout import dropout
from minissl.ops.elementwise import add, div, exp, log, mul, neg, pow, relu, sub
from minissl.ops.loss import cross_entropy, log_softmax
from minissl.ops.matmul import linear, matmul
from minissl.ops.norm import batch_norm
from minissl.ops.pool import avg_pool2d, global_avg_pool2d, max_pool2d
from minissl.ops.reduce import max, mean, sum
from minissl.ops.shape import reshape, take, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu",
    "sum", "mean", "max", "reshape", "transpose", "take", "matmul", "linear",
    "log_softmax", "cross_entropy", "conv2d", "conv2d_gathered", "max_pool2d", "avg_pool2d",
    "global_avg_pool2d", "batch_norm", "dropout",
]
