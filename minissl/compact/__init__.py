"""Compaction: turn a model with zeroed groups into a smaller dense model that computes
the same function (docs/design.md, Compaction).

    plan = plan_compaction(model, input_shape=(1, 28, 28))   # plain data; print or save_json
    small, report = compact(model, input_shape=(1, 28, 28))  # report is the plan
    zero_dropped_weights(model, input_shape=(1, 28, 28))     # the sparse model, same outputs

`chain.py` follows the model as a chain of declared layers (minissl/nn/protocol.py) and
traces one sample's shape along it, `plan.py` decides what can go and counts the FLOPs
(the one FLOP counter every table uses), `build.py` builds the new layers.
"""

import numpy as np

from minissl.backend import xp_of
from minissl.compact.build import build_compacted, build_layer
from minissl.compact.chain import layer_chain, trace_shapes
from minissl.compact.plan import CompactionPlan, LayerPlan, plan_compaction
from minissl.nn.protocol import CompactionError


def compact(model, input_shape=None):
    """Return (small model, CompactionPlan): the compacted copy and what it kept.

    The input model is not modified. For any finite input, small(x) equals model(x) up to
    float rounding (tests/test_compact.py checks it on real MNIST images). A NaN or infinity
    read only by removed weights is the exception: the sparse model multiplies it by zero
    weights (0 * NaN is NaN), the compacted one never reads it. The plan gives, per
    layer, kept indices, weight shapes and FLOPs before and after. Raises CompactionError
    for unsupported models or a layer with nothing left.
    """
    if not hasattr(model, "named_modules"):  # the protocol, not a class, says what a model is
        raise TypeError(f"compact needs a minissl.nn Module, got {type(model).__name__}")
    plan = plan_compaction(model, input_shape)
    small = build_compacted(model, plan)
    if any(xp_of(parameter.data) is not np for parameter in model.parameters()):
        small.to_backend()  # built from NumPy copies; follow the model onto the GPU
    return small, plan


def zero_dropped_weights(model, input_shape=None):
    """Set to exactly zero, in place, every weight of `model` that its compacted copy drops:
    the rows of outputs it removes and the columns of inputs it removes (a Conv2d's input
    channels, a Linear's input columns), with their biases. Returns {layer name: number of
    weights (and biases) that were nonzero and are now zero}, for the layers where any were.

    The model's outputs do not change: a dropped input carries exactly zero (a filter whose
    weights and bias are zero, through ReLUs and pools) or is read by no kept output, so every
    weight set here multiplied a zero or fed an output nobody reads. What it changes is the
    count of zero groups: a conv layer's columns on a channel the layer before no longer
    produces are zero afterwards, as the group lasso would make them given enough steps (their
    loss gradient is zero; only the penalty moves them). BatchNorm parameters are left alone.
    Raises CompactionError as plan_compaction does.
    """
    plan = plan_compaction(model, input_shape)
    modules = dict(model.named_modules())
    zeroed = {}
    for layer in plan.layers:
        if layer.kind not in ("linear", "conv"):
            continue
        module = modules[layer.name]
        weight = module.weight.data
        xp = xp_of(weight)
        drop_out = np.ones(weight.shape[0], dtype=bool)
        drop_out[layer.kept_out] = False
        drop_in = np.ones(weight.shape[1], dtype=bool)
        drop_in[layer.kept_in] = False
        drop_out, drop_in = xp.asarray(drop_out), xp.asarray(drop_in)
        parameters = [weight] if module.bias is None else [weight, module.bias.data]
        before = sum(int(xp.count_nonzero(array)) for array in parameters)
        weight[drop_out] = 0
        weight[:, drop_in] = 0
        if module.bias is not None:
            module.bias.data[drop_out] = 0
        count = before - sum(int(xp.count_nonzero(array)) for array in parameters)
        if count:
            zeroed[layer.name] = count
    return zeroed


__all__ = ["compact", "zero_dropped_weights", "plan_compaction", "build_compacted", "build_layer",
           "layer_chain", "trace_shapes", "CompactionPlan", "LayerPlan", "CompactionError"]
