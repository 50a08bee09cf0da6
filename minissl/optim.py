"""Stochastic gradient descent and learning-rate schedules.

SGD follows the convention of PyTorch's torch.optim.SGD (so that the hyperparameters in
docs/design.md carry over): for each parameter w with gradient g,

    g <- g + weight_decay * w                 (L2 decay, the lambda * R(W) of [SSL eq. 1])
    v <- momentum * v + g                     (v starts as g on the first step)
    d <- g + momentum * v   if nesterov else v
    w <- w - lr * d

The group-lasso term is not part of the step: `minissl.ssl.prox` applies it afterwards.
"""

import math

from minissl.autograd import no_grad


class SGD:
    """SGD with momentum, L2 weight decay and optional Nesterov momentum.

    `params` is a list of Parameters. `step()` updates them in place from `.grad`
    (parameters whose grad is None are skipped); `zero_grad()` clears the grads.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        params = list(params)
        if not params:
            raise ValueError("SGD got an empty parameter list")
        if not all(math.isfinite(value) and value >= 0 for value in (lr, momentum, weight_decay)):
            raise ValueError(f"lr, momentum and weight_decay must be finite and >= 0, got {lr}, "
                             f"{momentum}, {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.params = params
        self.lr, self.momentum = lr, momentum
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.velocity = [None] * len(params)

    def zero_grad(self):
        """Set every parameter's grad to None."""
        for param in self.params:
            param.grad = None

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        with no_grad():
            for index, param in enumerate(self.params):
                if param.grad is not None:
                    param.data -= self.lr * self._direction(index, param)

    def _direction(self, index, param):
        """Return the update direction d for one parameter (see the module docstring)."""
        grad = param.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if not self.momentum:
            return grad
        velocity = self.velocity[index]
        if velocity is None:
            velocity = self.velocity[index] = grad.copy()
        else:
            velocity *= self.momentum
            velocity += grad
        return grad + self.momentum * velocity if self.nesterov else velocity


class Schedule:
    """A learning-rate schedule: `step()` once per optimizer step sets `optimizer.lr`.

    Subclasses define `lr_at(t)`, the rate after t steps; `base_lr` is the optimizer's
    rate when the schedule was made.
    """

    def __init__(self, optimizer):
        self.optimizer, self.base_lr, self.t = optimizer, optimizer.lr, 0

    def lr_at(self, t):
        raise NotImplementedError

    def step(self):
        """Advance one step and set the optimizer's learning rate."""
        self.t += 1
        self.optimizer.lr = self.lr_at(self.t)


class CosineSchedule(Schedule):
    """lr_t = final + (base - final) * (1 + cos(pi * t / total)) / 2; final_lr after total_steps."""

    def __init__(self, optimizer, total_steps, final_lr=0.0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        super().__init__(optimizer)
        self.total_steps, self.final_lr = total_steps, final_lr

    def lr_at(self, t):
        progress = min(t, self.total_steps) / self.total_steps
        return self.final_lr + (self.base_lr - self.final_lr) * (1 + math.cos(math.pi * progress)) / 2


class StepSchedule(Schedule):
    """lr_t = base * gamma ** (t // step_size): multiply by gamma every step_size steps."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)
