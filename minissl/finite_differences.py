"""Finite-difference gradient checking, public so learners can test their own ops and layers.

For a function f of Tensors we compare the autograd gradient of L = sum(f(x) * v), with a
fixed random v, against the central difference (L(x + eps) - L(x - eps)) / (2 eps) at
every element of every input. The random projection v lets one backward pass check the
whole Jacobian-vector product, and every element is perturbed, not a sample.

gradcheck(fn, inputs)          inputs are arrays; fn maps Tensors to a Tensor
gradcheck_module(module, ins)  also checks every Parameter of a float64 Module
"""

import numpy as np

from minissl.tensor import Tensor


class GradcheckError(AssertionError):
    """Autograd and finite differences disagree; the message names the worst element."""


def _projected_loss(fn, arrays, projection, requires_grad):
    """Return (L, input tensors) with L = sum(fn(*inputs) * projection) as a Tensor."""
    tensors = [Tensor(array, requires_grad=requires_grad) for array in arrays]
    return (fn(*tensors) * Tensor(projection)).sum(), tensors


def numerical_gradient(loss_value, target, eps):
    """Central differences of the scalar function `loss_value()` w.r.t. every element of
    the array `target`, which is perturbed in place and restored."""
    grad = np.zeros_like(target)
    for position in np.ndindex(target.shape):
        original = target[position]
        target[position] = original + eps
        plus = loss_value()
        target[position] = original - eps
        minus = loss_value()
        target[position] = original
        grad[position] = (plus - minus) / (2 * eps)
    return grad


def compare_gradients(label, analytic, numeric, rtol, atol):
    """Raise GradcheckError naming the worst element where |a - n| > atol + rtol |n|."""
    if analytic is None:
        analytic = np.zeros_like(numeric)
    if analytic.shape != numeric.shape:
        raise GradcheckError(f"{label}: gradient shape {analytic.shape}, expected {numeric.shape}")
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if np.any(excess > 0):
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        raise GradcheckError(f"{label} element {tuple(int(i) for i in worst)}: autograd "
                             f"{analytic[worst]:.10g}, finite difference {numeric[worst]:.10g}")


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0):
    """Check the autograd gradient of `fn` with respect to every input, in float64.

    fn:     maps Tensors (one per input) to a Tensor
    inputs: list of arrays; each is copied as float64, so the caller's arrays are untouched
    Returns True, or raises GradcheckError naming the input, element and both values.
    """
    arrays = [np.array(array, dtype=np.float64) for array in inputs]
    projection = np.random.default_rng(seed).standard_normal(fn(*[Tensor(a) for a in arrays]).shape)
    loss, tensors = _projected_loss(fn, arrays, projection, True)
    loss.backward()

    def loss_value():
        return _projected_loss(fn, arrays, projection, False)[0].item()

    for index, tensor in enumerate(tensors):
        numeric = numerical_gradient(loss_value, arrays[index], eps)
        compare_gradients(f"input {index}", tensor.grad, numeric, rtol, atol)
    return True


def gradcheck_module(module, inputs, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0):
    """Check gradients of `module(*inputs)` w.r.t. every input and every Parameter.

    The module's parameters must be float64 (build it with dtype=np.float64); they are
    perturbed in place and restored. Raises GradcheckError as `gradcheck` does, naming
    the parameter by its dotted name.
    """
    named = list(module.named_parameters())
    for name, parameter in named:
        if parameter.dtype != np.float64:
            raise TypeError(f"gradcheck_module needs float64 parameters; {name} is {parameter.dtype}")
    gradcheck(module, inputs, eps, rtol, atol, seed)
    arrays = [np.array(array, dtype=np.float64) for array in inputs]
    projection = np.random.default_rng(seed).standard_normal(module(*[Tensor(a) for a in arrays]).shape)
    module.zero_grad()
    _projected_loss(module, arrays, projection, False)[0].backward()

    def loss_value():
        return _projected_loss(module, arrays, projection, False)[0].item()

    for name, parameter in named:
        numeric = numerical_gradient(loss_value, parameter.data, eps)
        compare_gradients(f"parameter {name}", parameter.grad, numeric, rtol, atol)
    module.zero_grad()
    return True
