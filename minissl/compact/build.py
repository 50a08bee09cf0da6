"""Build the compacted model from a CompactionPlan: new, smaller layers holding copies of
the kept weights. The original model is never modified (docs/design.md, Compaction: no surgery in place).
Each layer builds its own compacted copy (`compacted`, minissl/nn/protocol.py).
"""

from minissl import nn
from minissl.compact.chain import layer_chain


def build_layer(name, module, plan):
    """The compacted copy of one layer (name = its path in the original model)."""
    return module.compacted(name, plan)


def build_compacted(model, plan):
    """A new Sequential computing the same function as `model` with only what `plan` keeps:
    the compacted copies of the model's chain of layers, after a Take of the kept inputs."""
    modules = [module.compacted(name, plan)
               for name, module in layer_chain(model, plan.input_shape)]
    if plan.input_indices is not None:
        modules.insert(0, nn.Take(plan.input_indices))
    small = nn.Sequential(*modules)
    return small.train(model.training)
