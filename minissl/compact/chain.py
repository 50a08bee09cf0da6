"""Follow a model as a chain of declared layers, and the shape of one sample along it.

Compaction works on a chain: each layer takes exactly the previous layer's output. A
Sequential is one by construction (nested Sequentials are looked through). Any other Module
is followed by running its forward once on a zero sample and recording which declared
layers it calls (minissl/nn/protocol.py, ChainTracer); a forward that does something
outside a layer (x.reshape, ops.relu, two paths that meet) is not a chain, and the error
says where it lost the thread.
"""

import numpy as np

from minissl import no_grad
from minissl.backend import xp_of
from minissl.nn import protocol
from minissl.nn.module import eval_mode
from minissl.nn.protocol import CompactionError, LayerNotDeclared, Role, undeclared
from minissl.tensor import Tensor


def static_chain(module, name=""):
    """[(name, layer)] of a container's layers in forward order, nested containers looked
    through; a single layer is a chain of one. Names are paths in the model ("3.branch.0")."""
    if module.role is Role.CONTAINER:
        prefix = f"{name}." if name else ""
        return [entry for child, sub in module._modules.items()
                for entry in static_chain(sub, prefix + child)]
    return [(name, module)]


def layer_chain(model, input_shape):
    """[(name, layer)]: the declared layers `model` applies in order to one sample of shape
    `input_shape` (no batch axis). Raises CompactionError when its forward is not a chain."""
    if model.role is not None:
        return static_chain(model)
    return _traced_chain(model, tuple(input_shape))


def _traced_chain(model, input_shape):
    kind = type(model).__name__
    parameters = model.parameters()
    like = parameters[0].data if parameters else np.zeros(0, dtype=np.float32)
    probe = Tensor(xp_of(like).zeros((1,) + input_shape, dtype=like.dtype))
    tracer = protocol.ChainTracer()
    try:  # in eval mode: no running statistics move, no dropout
        with eval_mode(model), no_grad(), protocol.tracing(tracer):
            output = model(probe)
    except CompactionError:
        raise
    except Exception as error:
        raise CompactionError(f"cannot follow {kind}.forward on one sample of shape "
                              f"{input_shape}: {error}") from error
    names = {id(module): name for name, module in model.named_modules()}
    if tracer.undeclared:
        module = tracer.undeclared[0]
        raise undeclared(module, names.get(id(module)))
    chain, current, previous = [], probe, "the model's input"
    for module, taken, given in tracer.entries:
        name = names.get(id(module))
        if name is None:
            raise CompactionError(f"{kind}.forward calls a {type(module).__name__} that is not "
                                  f"a sub-module of the model; assign it as an attribute in "
                                  f"__init__ so that compaction can name and copy it")
        if taken is not current:
            raise CompactionError(
                f"cannot follow {kind}.forward as a chain of layers: layer {name} does not take "
                f"{previous} (an operation outside a declared layer, such as x.reshape or "
                f"ops.relu, lies between them, or the forward branches). Compaction follows "
                f"chains of declared layers and residual blocks: write such steps as layers "
                f"(nn.Flatten(), nn.ReLU(), ...)")
        stateless = not module.parameters() and not module._buffers  # ReLU, pools, Flatten
        if not stateless and any(module is seen for _, seen in chain):
            raise CompactionError(f"{kind}.forward calls layer {name} twice (shared weights); "
                                  f"compaction cannot shrink one copy for two places")
        chain.append((name, module))
        current, previous = given, f"the output of layer {name}"
    if output is not current:
        raise CompactionError(f"cannot follow {kind}.forward as a chain of layers: it does not "
                              f"return {previous} (an operation outside a declared layer comes "
                              f"after it)")
    return chain


def trace_shapes(chain, input_shape):
    """[shape before chain[0], shape before chain[1], ..., shape after the last].

    `chain` is [(name, layer)] (or plain layers, named by position). Raises CompactionError
    naming the first layer that does not take the shape it gets or declares no shape.
    """
    shapes = [tuple(input_shape)]
    for index, entry in enumerate(chain):
        name, module = entry if isinstance(entry, tuple) else (str(index), entry)
        if module.role is None:
            raise undeclared(module, name)
        wanted = module.input_mismatch(shapes[-1])
        if wanted is not None:
            raise CompactionError(f"module {name} ({module!r}) takes {wanted}, but input_shape "
                                  f"{tuple(input_shape)} gives it a sample of shape "
                                  f"{shapes[-1]}; pass the shape of one sample, without the "
                                  f"batch axis")
        try:
            shapes.append(tuple(module.sample_shape(shapes[-1])))
        except LayerNotDeclared as error:
            raise error.named(name) from None
    return shapes
