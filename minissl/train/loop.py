"""One epoch of SGD, prediction and the error rate: the loop every phase runs.

`train_epoch` is the textbook loop: forward, cross-entropy, backward, the optimizer step,
and the regularizer's hooks around it (the proximal group-lasso step [prox] hooks in after
the step). The phases, checkpoints and records around it are minissl.train.trainer's.
"""

import math
import sys
import time

import numpy as np
from tqdm import tqdm

from minissl import data, ops
from minissl.autograd import no_grad
from minissl.backend import array_module, to_numpy
from minissl.tensor import Tensor
from minissl.train.records import Diverged

EVAL_BATCH = 1000


def on_backend(array):
    """The array in the current backend's array module (a copy to the GPU under cupy)."""
    return array_module().asarray(array)


def train_epoch(model, optimizer, schedule, inputs, labels, batch_size, rng, description,
                regularizer=None, augment=None):
    """One pass over the data with SGD; returns (mean loss, training error).

    Shapes: inputs (N, ...) float32, labels (N,) int64.
    `regularizer` (e.g. minissl.ssl.GroupLasso) gets `before_step()` between backward
    and the optimizer step, and `after_step(lr)` after it, with that step's learning
    rate: the proximal group-lasso step hooks in there. `augment(batch, rng)`, when given,
    transforms each batch of inputs first (random crops and flips for CIFAR). `schedule`
    (or None) steps after every batch. Shows a tqdm bar with loss, accuracy and images per
    second when stderr is a terminal. Raises Diverged when the loss stops being finite.
    """
    model.train()
    total_loss, wrong, seen, start = 0.0, 0, 0, time.perf_counter()
    steps = -(-len(inputs) // batch_size)
    # disable=None: no bar when stderr is not a terminal (a log file gets the epoch lines,
    # not a megabyte of redraws)
    with tqdm(total=steps, desc=description, leave=False, unit="batch", file=sys.stderr,
              disable=None) as bar:
        for step, (batch_inputs, batch_labels) in enumerate(
                data.batches(inputs, labels, batch_size, rng), start=1):
            if augment is not None:
                batch_inputs = augment(batch_inputs, rng)
            logits = model(Tensor(on_backend(batch_inputs)))
            loss = ops.cross_entropy(logits, batch_labels)
            optimizer.zero_grad()
            loss.backward()
            lr = optimizer.lr
            if regularizer is not None:
                regularizer.before_step()
            optimizer.step()
            if regularizer is not None:
                try:
                    regularizer.after_step(lr)
                except FloatingPointError as error:  # ssl.NonFiniteWeights
                    raise Diverged(f"{error} (step {step} of {description}, lr {lr:g})") from error
            if schedule is not None:
                schedule.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise Diverged(f"the training loss became {loss_value} at step {step} of "
                               f"{description}; try a lower --lr (this phase: {lr:g})")
            total_loss += loss_value * len(batch_labels)
            wrong += int((to_numpy(logits.data).argmax(axis=1) != batch_labels).sum())
            seen += len(batch_labels)
            bar.update(1)
            if step % 20 == 0 or seen == len(inputs):
                rate = seen / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{1 - wrong / seen:.4f}",
                                img_s=f"{rate:,.0f}")
    return total_loss / seen, wrong / seen


def predict(model, inputs):
    """Predicted classes (N,) int64 for `inputs` (N, ...), in batches, in eval mode, without
    a graph. The model is left in eval mode."""
    model.eval()
    if len(inputs) == 0:
        return np.zeros(0, dtype=np.int64)
    predictions = []
    with no_grad():
        for start in range(0, len(inputs), EVAL_BATCH):
            logits = model(Tensor(on_backend(inputs[start:start + EVAL_BATCH])))
            predictions.append(to_numpy(logits.data).argmax(axis=1))
    return np.concatenate(predictions)


def error_rate(model, inputs, labels):
    """The fraction of `inputs` (N, ...) whose predicted class is not `labels` (N,).
    Raises ValueError when the two differ in length or are empty."""
    if len(inputs) != len(labels) or len(inputs) == 0:
        raise ValueError(f"error_rate needs as many labels as inputs, at least one: got "
                         f"{len(inputs)} inputs and {len(labels)} labels")
    return float((predict(model, inputs) != np.asarray(labels)).mean())
