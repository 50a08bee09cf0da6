"""How strong a lambda removes a group: the critical lambda of every group, measured.

The proximal step [prox] takes lr * lambda * s_g off a group's norm at every step (s_g is
sqrt(|g|) with SSLConfig.scale_by_size, else 1). The loss gradient pushes back: SGD with
momentum m moves the weights by about lr * grad / (1 - m) per step when the gradient stays
the same from step to step, so the group's norm changes by

    lr * (-<grad_g, w_g> / ||w_g||) / (1 - m)      (the radial part of the gradient step)

A group shrinks to zero where the prox step wins, lambda * s_g above

    critical_g = (-<grad_g, w_g> / ||w_g|| - weight_decay * ||w_g||) / (1 - m)

(weight decay, part of the gradient step, pulls toward zero as the prox does). For a group that
is exactly zero the radial direction is undefined; it stays zero while the prox step can undo
the whole gradient step [prox: zero is a fixed point when ||grad_g|| / (1 - m) <= lambda * s_g],
so its critical lambda is ||grad_g|| / (1 - m) / s_g.

The probe is a snapshot: during training the rest of the network adapts while a group
shrinks, which lowers the gradient that defends it, so a group usually dies at a lambda
below its probed critical value (docs/ssl.md, "Choosing lambda"). Scaling the groups to a
fraction of themselves first (`scale`) shows the push-back where it matters: a group that is
already small, where the gradient defending a useful structure is largest.
"""

import numpy as np

from minissl import ops
from minissl.backend import array_module, to_numpy, xp_of
from minissl.nn.module import eval_mode
from minissl.tensor import Tensor


def _mean_gradients(model, inputs, labels, batch_size):
    """Set every parameter's grad to the mean cross-entropy gradient over all of `inputs`
    (in batches). Shapes: inputs (N, ...), labels (N,)."""
    parameters = model.parameters()
    totals = [None] * len(parameters)
    for start in range(0, len(inputs), batch_size):
        batch = slice(start, start + batch_size)
        weight = (min(start + batch_size, len(inputs)) - start) / len(inputs)
        loss = ops.cross_entropy(model(Tensor(array_module().asarray(inputs[batch]))),
                                 labels[batch])
        for parameter in parameters:
            parameter.grad = None
        loss.backward()
        for index, parameter in enumerate(parameters):
            if parameter.grad is not None:
                share = weight * parameter.grad
                totals[index] = share if totals[index] is None else totals[index] + share
    for parameter, total in zip(parameters, totals):
        parameter.grad = total


def _critical(group_set, momentum, weight_decay, size_scale):
    """critical_g of every group of a set from its members' .grad (module docstring).
    Shape: group_shape, float64."""
    inner, grad_squared = 0.0, 0.0
    for member in group_set.members:
        data, grad = member.parameter.data, member.parameter.grad
        if grad is None:
            grad = 0.0 * data
        inner = inner + (grad * data).sum(axis=member.reduce_axes())
        grad_squared = grad_squared + (grad * grad).sum(axis=member.reduce_axes())
    norms = np.asarray(to_numpy(group_set.norms()), dtype=np.float64)
    inner = np.asarray(to_numpy(inner), dtype=np.float64)
    grad_norms = np.sqrt(np.asarray(to_numpy(grad_squared), dtype=np.float64))
    zero = norms == 0
    radial = -inner / np.where(zero, 1.0, norms) - weight_decay * norms
    # a zero group: its radial direction is undefined; zero stays a fixed point of the prox
    # step while lambda * s_g >= ||grad_g|| / (1 - m)
    return np.where(zero, grad_norms, radial) / (1.0 - momentum) / size_scale


def critical_lambdas(model, lasso, inputs, labels, scale=1.0, momentum=0.9, weight_decay=0.0,
                     batch_size=256):
    """The lambda above which the prox step would shrink each group of `lasso` faster than the
    gradient step regrows it (module docstring), with every group of a set scaled to `scale`
    of itself (one set at a time; the others as they are) and the gradient averaged over
    `inputs` in train mode (BatchNorm on batch statistics, as in training).

    Shapes: inputs (N, ...) float, labels (N,) int; returns one float64 array per group set of
    lasso.group_sets, in that order, each of the set's group_shape (() for a DEPTH group).
    The model's weights, gradients and train/eval mode are as before when it returns.
    Raises ValueError for a scale outside (0, 1], a momentum outside [0, 1), a negative weight
    decay, no inputs, or inputs and labels of different lengths.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if len(inputs) == 0 or len(inputs) != len(labels):
        raise ValueError(f"need as many labels as inputs, and at least one: got {len(inputs)} "
                         f"inputs and {len(labels)} labels")
    saved_grads = [parameter.grad for parameter in model.parameters()]
    results = []
    try:
        with eval_mode(model):  # restores every module's train/eval mode on the way out
            model.train()
            for group_set in lasso.group_sets:
                saved = [member.parameter.data.copy() for member in group_set.members]
                try:
                    xp = xp_of(group_set.members[0].parameter.data)
                    group_set.scale(xp.full(group_set.group_shape, scale))
                    _mean_gradients(model, inputs, labels, batch_size)
                    results.append(_critical(group_set, momentum, weight_decay,
                                             lasso._size_scale(group_set)))
                finally:
                    for member, data in zip(group_set.members, saved):
                        member.parameter.data[...] = data
    finally:
        for parameter, grad in zip(model.parameters(), saved_grads):
            parameter.grad = grad
    return results
