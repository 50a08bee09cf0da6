"""Classification losses: log_softmax and cross_entropy with integer labels.

Both subtract the row maximum before exponentiating, so large logits do not overflow
(the log-sum-exp trick).
"""

import numpy as np

from minissl.autograd import Function
from minissl.backend import to_numpy, xp_of


def _log_softmax(x):
    """Stable log-softmax over the last axis of a raw array."""
    xp = xp_of(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.out = _log_softmax(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad_out):
        # d/dx_j sum_i g_i (x_i - lse(x)) = g_j - softmax_j * sum_i g_i
        softmax = xp_of(grad_out).exp(ctx.out)
        return (grad_out - softmax * grad_out.sum(axis=-1, keepdims=True),)


class CrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label]."""

    @staticmethod
    def forward(ctx, logits, labels):
        xp = xp_of(logits)
        log_probs = _log_softmax(logits)  # (B, classes)
        rows = xp.arange(logits.shape[0])
        ctx.log_probs, ctx.labels, ctx.rows = log_probs, labels, rows
        return -log_probs[rows, labels].mean()

    @staticmethod
    def backward(ctx, grad_out):
        xp = xp_of(grad_out)
        grad = xp.exp(ctx.log_probs)  # softmax, (B, classes)
        grad[ctx.rows, ctx.labels] -= 1.0
        grad *= grad_out / ctx.log_probs.shape[0]
        return (grad,)


def log_softmax(x):
    """Log of the softmax over the last axis. Shapes: (*, classes) -> (*, classes)."""
    return LogSoftmax.apply(x)


def _check_labels(logits, labels):
    """Validate integer labels against logits; return them as an array of logits' module."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (B, classes), got {logits.shape}")
    labels_np = to_numpy(labels)
    if labels_np.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy labels must be integers, got dtype {labels_np.dtype}")
    if labels_np.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels_np.shape}")
    if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got range "
                         f"[{labels_np.min()}, {labels_np.max()}]")
    return xp_of(logits.data).asarray(labels_np.astype(np.int64, copy=False))


def cross_entropy(logits, labels):
    """Mean cross-entropy of `logits` against integer class `labels`.

    Shapes: logits (B, classes), labels (B,) integers in [0, classes) -> scalar.
    Raises TypeError for non-integer labels, ValueError for wrong shapes or ranges.
    """
    return CrossEntropy.apply(logits, labels=_check_labels(logits, labels))
