"""The layer protocol: what a layer means to SSL, compaction, FLOP counts and timing.

Every layer says it once, in its own class, and nothing else in minissl tests a layer's
type: the compactor (minissl.compact), the FLOP counter (the compaction plan), the SSL group
builder (minissl.ssl.groups) and the timing walk (minissl.timing) only ask. A layer first
declares its `role`, then what that role needs (docs/adding_a_layer.md walks through one):

| role        | examples                      | declares                                          |
|-------------|-------------------------------|---------------------------------------------------|
| WEIGHTS     | Linear, Conv2d                | sample_shape, input_mismatch, ssl_group_axes,     |
|             |                               | weight_by_channel, gathers_columns, flops,        |
|             |                               | compacted, gemm_operands, csr_forward, plan_kind  |
| CHANNELWISE | ReLU, pools, BatchNorm2d,     | sample_shape, maps_zero_to_zero (or zero_channels)|
|             | Dropout, Flatten              | features_per_channel; with parameters: compacted, |
|             |                               | plan_kind                                         |
| BLOCK       | BasicBlock                    | sample_shape, branch, shortcut, compacted         |
| CONTAINER   | Sequential                    | its children run in order; compacted              |
| COMPACTED   | GatheredConv2d, Take          | sample_shape (and the timing methods if timed)    |

- A WEIGHTS layer computes y = W (*) x + b with output unit / filter o in row o of its
  weight and input unit / channel c in column block c: SSL groups are views of those axes.
- A CHANNELWISE layer acts on every channel on its own (channel c of its output depends only
  on channel c of its input). `maps_zero_to_zero` says whether an all-zero input channel
  gives an all-zero output channel: only then can the channel of a zero filter be dropped
  behind it (ReLU(0) = 0, max of zeros = 0; a sigmoid maps 0 to 0.5 and must say False).
- A layer that declares nothing (role None) stops compaction with an error that names it:
  never a silently wrong small model.

FLOPs (docs/design.md, Compaction): a multiply-add is 2 FLOPs; only WEIGHTS layers are counted (their GEMM).
"""

import contextlib
import enum
import threading


class CompactionError(ValueError):
    """The model cannot be compacted as asked (undeclared layer, nothing left, bad shape)."""


class Role(enum.Enum):
    """What a layer is to compaction: see the module docstring."""

    WEIGHTS = "weights"
    CHANNELWISE = "channelwise"
    BLOCK = "block"
    CONTAINER = "container"
    COMPACTED = "compacted"


class LayerNotDeclared(CompactionError):
    """A layer does not declare what compaction needs to know (`what`)."""

    def __init__(self, module, name=None, what="the layer protocol"):
        self.module, self.name, self.what = module, name, what
        where = f"layer {name} ({type(module).__name__})" if name else (
            f"layer {type(module).__name__}")
        super().__init__(f"{where} does not declare {what}, so minissl cannot tell what "
                         f"compaction may do with it; give the class a role and the methods "
                         f"of minissl/nn/protocol.py (docs/adding_a_layer.md shows how)")

    def named(self, name):
        """The same error, naming the layer by its path in the model."""
        return LayerNotDeclared(self.module, name, self.what)


def undeclared(module, name=None, what="the layer protocol"):
    """The CompactionError for a layer that does not declare `what`."""
    return LayerNotDeclared(module, name, what)


class ChainTracer:
    """Records the declared layers that one forward pass calls, outermost only.

    Module.__call__ hands every call to this thread's active tracer (`tracing`). A layer with
    a role other than CONTAINER is one entry (its inside is not recorded); a container or an
    undeclared Module with sub-layers is looked through; an undeclared Module whose forward
    calls no layer is recorded as undeclared.
    Entries: (module, input, output) with the Tensors themselves, so that the caller can check
    that each layer takes exactly the previous one's output.
    """

    def __init__(self):
        self.entries, self.undeclared = [], []
        self._inside = 0  # > 0 while a recorded layer runs its own forward

    def call(self, module, inputs):
        if self._inside:
            return module.forward(*inputs)
        if module.role is None or module.role is Role.CONTAINER:
            count = len(self.entries)
            output = module.forward(*inputs)
            if module.role is None and len(self.entries) == count:
                self.undeclared.append(module)
            return output
        self._inside += 1
        try:
            output = module.forward(*inputs)
        finally:
            self._inside -= 1
        self.entries.append((module, inputs[0] if len(inputs) == 1 else inputs, output))
        return output


class _ActiveTracer(threading.local):
    """The tracer following this thread's forward pass, else None (read by Module.__call__):
    per thread, so that a trace in one thread never sees another thread's calls."""
    tracer = None


_active = _ActiveTracer()


def active_tracer():
    """The tracer of a running trace in this thread, else None."""
    return _active.tracer


@contextlib.contextmanager
def tracing(tracer):
    """Hand every Module call in this thread to `tracer.call(module, inputs)` inside the
    block (ChainTracer for compaction; minissl.timing records the inputs of conv layers)."""
    previous, _active.tracer = _active.tracer, tracer
    try:
        yield tracer
    finally:
        _active.tracer = previous
