"""Compaction: turn a model with zeroed groups into a smaller dense model that computes
the same function (docs/design.md, Compaction).

    plan = plan_compaction(model, input_shape=(1, 28, 28))   # plain data; print or save_json
    small, report = compact(model, input_shape=(1, 28, 28))  # report is the plan

`chain.py` follows the model as a chain of declared layers (minissl/nn/protocol.py) and
traces one sample's shape along it, `plan.py` decides what can go and counts the FLOPs
(the one FLOP counter every table and benchmark uses), `build.py` builds the new layers.
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


__all__ = ["compact", "plan_compaction", "build_compacted", "build_layer", "layer_chain",
           "trace_shapes", "CompactionPlan", "LayerPlan", "CompactionError"]
