"""Find what can go: the zero groups of a trained model -> a CompactionPlan (plain data).

The model is followed as a chain of declared layers (chain.py); what each layer is comes from
the layer itself (minissl/nn/protocol.py), never from its type. Rules (docs/design.md,
Compaction), for a producer layer P (a WEIGHTS layer: Linear, Conv2d) whose outputs reach
the next one Q through CHANNELWISE layers only (ReLU, pools, BatchNorm, Dropout, Flatten):

- output o of P is *dead* when its row of W (restricted to P's kept inputs) and its bias are
  zero, so it carries exactly 0, and every layer between maps a zero channel to a zero
  channel (each layer's `zero_channels`: ReLU(0) = 0, pools of 0 are 0, a BatchNorm whose
  shift is 0 ...), or when a layer between makes o zero by itself (a BatchNorm with scale
  and shift zero for o: the filter group's riders);
- output o is *unused* when every kept output of Q has zero weights on it (Q's channel o,
  or the block of columns a Flatten maps channel o to);
- either way row o of P, channel o of Q and entry o of the BatchNorms between go.
Removing outputs of Q can make more inputs of Q unused, and removing inputs of P can make
more outputs of P dead, so the rules are applied until nothing changes. The first layer's
unused inputs are gathered away at the model's entry. Conv columns (c, kh, kw) that are zero
for every kept filter become a gathered convolution. A residual block whose branch is all
zero becomes relu(shortcut(x)); inside a block, the branch's middle channels shrink by the
same rules. Outputs of the last layer and of layers feeding a residual block are all kept.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from minissl.atomic import atomic_file
from minissl.backend import to_numpy
from minissl.compact.chain import layer_chain, static_chain, trace_shapes
from minissl.nn.protocol import CompactionError, LayerNotDeclared, Role, undeclared


@dataclass
class LayerPlan:
    """What stays of one layer. Indices refer to the original layer; FLOPs are per sample."""

    name: str
    kind: str                 # "linear", "conv" or "batch_norm"
    kept_out: list            # kept output units / filters / BN channels
    kept_in: list             # kept input columns (dense) or channels (conv; BN: = kept_out)
    kept_columns: list        # conv: kept (c, kh, kw) columns of W.reshape(N, -1) when some
                              # columns of kept channels are zero, else None
    shape_before: list        # weight shape (BN: [C])
    shape_after: list         # weight shape of the compacted layer ([N, R] when gathered)
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int


_LAYER_FIELDS = [field.name for field in fields(LayerPlan)]


def _plain(value):
    """NumPy integers and arrays inside a plan's dict as plain Python numbers and lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class CompactionPlan:
    """Plain data: per-layer plans, the model's kept inputs and the residual blocks dropped."""

    input_shape: list
    input_indices: list       # kept entries of the input's axis 1, or None for all
    layers: list
    removed_blocks: list

    def layer(self, name):
        """The LayerPlan of the layer named `name` (its path in the original model)."""
        for plan in self.layers:
            if plan.name == name:
                return plan
        raise KeyError(f"no layer named {name!r} in the plan")

    @property
    def flops_before(self):
        return sum(plan.flops_before for plan in self.layers)

    @property
    def flops_after(self):
        return sum(plan.flops_after for plan in self.layers)

    @property
    def params_before(self):
        return sum(plan.params_before for plan in self.layers)

    @property
    def params_after(self):
        return sum(plan.params_after for plan in self.layers)

    def to_dict(self):
        return asdict(self)

    def to_json(self):
        """The plan as JSON text (plain lists and numbers); from_json reads it back."""
        return json.dumps(_plain(self.to_dict()), indent=1)

    def save_json(self, path):
        """Write the plan as JSON to `path`, atomically (a temporary file, then a rename)."""
        with atomic_file(path) as file:
            file.write(self.to_json())

    @classmethod
    def from_dict(cls, data):
        """The plan of a dict as to_dict() gives it. ValueError names a missing field."""
        try:
            layers = [LayerPlan(**{name: layer[name] for name in _LAYER_FIELDS})
                      for layer in data["layers"]]
            return cls(list(data["input_shape"]), data["input_indices"], layers,
                       list(data["removed_blocks"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a CompactionPlan: missing or malformed field {error}") from None

    @classmethod
    def from_json(cls, text):
        """The plan of JSON text as to_json() (or save_json) writes it."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def load_json(cls, path):
        """The plan saved at `path` by save_json."""
        return cls.from_json(Path(path).read_text())

    def __str__(self):
        lines = [f"{'layer':<16}{'kind':<11}{'before':>18}{'after':>18}{'FLOP %':>8}"]
        for plan in self.layers:
            pct = (f"{100.0 * plan.flops_after / plan.flops_before:.1f}" if plan.flops_before
                   else "-")
            before = "x".join(map(str, plan.shape_before))
            after = "x".join(map(str, plan.shape_after)) if plan.shape_after else "removed"
            lines.append(f"{plan.name:<16}{plan.kind:<11}{before:>18}{after:>18}{pct:>8}")
        return "\n".join(lines)


class _WeightLayer:
    """Analysis record of one WEIGHTS layer: its weight as W3 (out, channels, K)."""

    def __init__(self, name, module, out_shape, features_per_channel):
        self.name, self.module, self.out_shape = name, module, out_shape
        self.w3 = module.weight_by_channel(features_per_channel)  # (out, channels, K)
        bias = module.bias
        self.has_bias = bias is not None
        self.bias = to_numpy(bias.data) if self.has_bias else np.zeros(self.w3.shape[0])
        self.in_mask = np.ones(self.w3.shape[1], dtype=bool)
        self.out_mask = np.ones(self.w3.shape[0], dtype=bool)
        self.removed = False  # inside a residual block that is dropped
        # inside a residual block whose output still depends on its input through the other
        # path: this layer may compute exactly zero (then one zero column stands for it)
        self.may_be_zero = False

    def dead_outputs(self):
        """Outputs that are exactly zero: zero row over the kept inputs, zero bias."""
        live = np.any(self.w3[:, self.in_mask] != 0, axis=(1, 2))
        return ~live & (self.bias == 0)

    def unused_inputs(self):
        """Input channels that no kept output reads."""
        return ~np.any(self.w3[self.out_mask] != 0, axis=(0, 2))

    def kept_columns(self):
        """Flat (c, k) indices of the nonzero columns among kept outputs and inputs, or None."""
        kept = self.w3[self.out_mask][:, self.in_mask]  # (n, c, K)
        nonzero = np.any(kept != 0, axis=0)  # (c, K)
        if nonzero.all():
            return None
        channels = np.flatnonzero(self.in_mask)
        if not nonzero.any():
            if self.may_be_zero:  # it computes zeros: one zero column does the same
                return [int(channels[0]) * self.w3.shape[2]]
            raise CompactionError(f"layer {self.name}: no nonzero weight is left")
        positions = np.argwhere(nonzero)  # (R, 2) rows (new channel, k), row-major order
        return (channels[positions[:, 0]] * self.w3.shape[2] + positions[:, 1]).tolist()


class _Segment:
    """A producer's outputs reaching a consumer through `between`, [(name, channelwise layer)].

    With `keep_one` (the middle of a residual branch) a segment whose channels are all dead
    or unused keeps one of them instead of none: it then carries exactly zero to the
    consumer (`forced`), and the branch computes a constant that the block still adds.
    """

    def __init__(self, producer, consumer, between, keep_one=False):
        self.producer, self.consumer, self.between = producer, consumer, between
        self.keep_one, self.forced = keep_one, False

    def settle(self):
        """Apply the dead/unused rules once; return True when the masks changed."""
        dead = self.producer.dead_outputs()
        for name, layer in self.between:
            try:
                dead = layer.zero_channels(dead)
            except LayerNotDeclared as error:
                raise error.named(name) from None
        keep = self.producer.out_mask & ~dead & ~self.consumer.unused_inputs()
        if self.keep_one and not keep.any():
            keep[np.argmax(self.producer.out_mask)] = True  # the first channel still kept
            self.forced = True
        changed = bool(np.any(keep != self.producer.out_mask))
        self.producer.out_mask, self.consumer.in_mask = keep, keep.copy()
        return changed


class _Analysis:
    """Walks a chain of layers once, recording weight layers, segments and which layer's
    mask each channelwise layer with parameters (a BatchNorm) follows."""

    def __init__(self, chain, input_shape):
        self.records, self.segments = {}, []
        self.channel_owner = {}  # channelwise layer name -> (record, "out" | "in")
        self.first, self.removed_blocks = None, []
        self.blocks = []  # (name, branch records, shortcut records, middle segments or None)
        self._walk(chain, trace_shapes(chain, input_shape))

    def _walk(self, chain, shapes, inside_block=False, removed=False):
        """Pair each WEIGHTS layer (the producer) with the next one (the consumer) when only
        channelwise layers lie between them; a residual block between is a barrier. Inside a
        block the ends keep their widths. Returns the segments made."""
        producer, between, barrier, features = None, [], False, 1
        segments = []
        for (name, module), before, after in zip(chain, shapes[:-1], shapes[1:]):
            if module.role is Role.COMPACTED:
                raise CompactionError(f"module {name} ({type(module).__name__}) is already "
                                      f"compacted")
            if module.role is Role.WEIGHTS:
                record = self.records[name] = _WeightLayer(name, module, after, features)
                record.removed, record.may_be_zero = removed, inside_block
                owner = None
                if producer is not None and not barrier:
                    segments.append(_Segment(producer, record, between, keep_one=inside_block))
                    owner = (producer, "out")
                elif producer is None and not barrier and not inside_block:
                    self.first, owner = record, (record, "in")
                for between_name, _ in between:
                    if owner is not None:
                        self.channel_owner[between_name] = owner
                producer, between, barrier, features = record, [], False, 1
            elif module.role is Role.BLOCK:
                self._walk_block(name, module, before)
                between, barrier, features = [], True, 1  # its input and output widths stay
            elif module.role is Role.CHANNELWISE:
                if not barrier:
                    between.append((name, module))
                features *= module.features_per_channel(before)
            else:
                raise undeclared(module, name)
        if not removed:
            self.segments.extend(segments)
        return segments

    def _walk_block(self, name, block, before):
        shortcut = []
        if block.shortcut is not None:
            chain = static_chain(block.shortcut, f"{name}.shortcut")
            # may_be_zero: checked in settle(), the branch must then depend on x
            self._walk(chain, trace_shapes(chain, before), inside_block=True)
            shortcut = [self.records[part] for part, module in chain
                        if module.role is Role.WEIGHTS]
        chain = static_chain(block.branch, f"{name}.branch")
        removed = not any(np.any(to_numpy(p.data)) for p in block.branch.parameters())
        if removed:
            self.removed_blocks.append(name)  # depth: the branch computes exactly 0
        middle = self._walk(chain, trace_shapes(chain, before), inside_block=True,
                            removed=removed)
        parts = [self.records[part] for part, module in chain if module.role is Role.WEIGHTS]
        self.blocks.append((name, parts, shortcut, None if removed else middle))

    def settle(self):
        """Apply the rules until no mask changes; raise when a layer loses everything."""
        changed = True
        while changed:
            changed = False
            for segment in self.segments:
                changed |= segment.settle()
            if self.first is not None:
                keep = self.first.in_mask & ~self.first.unused_inputs()
                changed |= bool(np.any(keep != self.first.in_mask))
                self.first.in_mask = keep
        for record in self.records.values():
            if record.removed:
                continue
            if not record.out_mask.any() or not record.in_mask.any():
                raise CompactionError(self._nothing_left(record))
        for block in self.blocks:
            self._check_block_depends_on_input(*block)

    @staticmethod
    def _check_block_depends_on_input(name, parts, shortcut, middle):
        """A block whose branch and shortcut both ignore their input makes the network's
        output a constant: refuse, naming the layers that made it so. (`middle` is None
        for a removed block.)"""
        def kept_weights(record):
            return record.w3[record.out_mask][:, record.in_mask]

        zero_shortcut = [record.name for record in shortcut if not np.any(kept_weights(record))]
        if not zero_shortcut:
            return  # the identity, or a live projection, carries the input through
        zero = [record.name for record in parts if not np.any(kept_weights(record))]
        if middle is None:
            cause = f"its branch {name}.branch is all zero (removed)"
        elif zero:
            cause = f"layer {zero[0]} has no nonzero weight left"
        elif any(segment.forced for segment in middle):
            cause = f"every middle channel of {name}.branch is zero or unused"
        else:
            return  # the branch carries the input through
        raise CompactionError(
            f"block {name}: {cause} and its projection shortcut's layer {zero_shortcut[0]} has "
            f"no nonzero weight left, so the network's output no longer depends on its input; "
            f"nothing sensible is left to build")

    def _nothing_left(self, record):
        """The message when `record` lost every input or output: it names the layer whose
        weights are all zero when there is one (the cause), not a neighbour it starved."""
        dead = [other.name for other in self.records.values()
                if not other.removed and not np.any(other.w3)]
        if dead:
            return (f"layer {dead[0]} has no nonzero weight left, so the network's output no "
                    f"longer depends on its input; nothing sensible is left to build")
        side = "output" if not record.out_mask.any() else "input"
        return (f"layer {record.name}: every {side} is zero or unused, so the network's output "
                f"no longer depends on its input; nothing sensible is left to build")


def _layer_plan(name, record):
    """LayerPlan of a WEIGHTS layer from its settled analysis record; FLOPs from the layer."""
    module = record.module
    out_count, channels, taps = record.w3.shape
    kept_out, kept_channels = np.flatnonzero(record.out_mask), np.flatnonzero(record.in_mask)
    columns = record.kept_columns() if module.gathers_columns else None
    width = len(columns) if columns is not None else len(kept_channels) * taps
    bias = int(record.has_bias)
    return LayerPlan(name=name, kind=module.plan_kind, kept_out=kept_out.tolist(),
                     kept_in=module.input_entries(kept_channels, taps).tolist(),
                     kept_columns=columns, shape_before=list(module.weight.shape),
                     shape_after=module.compacted_shape(len(kept_out), len(kept_channels),
                                                        width, columns is not None),
                     flops_before=module.flops(record.out_shape, out_count, channels * taps),
                     flops_after=module.flops(record.out_shape, len(kept_out), width),
                     params_before=out_count * (channels * taps + bias),
                     params_after=len(kept_out) * (width + bias))


def _removed_plan(name, module, record):
    """LayerPlan of a layer inside a dropped residual block: nothing stays."""
    if record is None:  # a channelwise layer with parameters (a BatchNorm)
        shape, flops = [_channel_count(module)], 0
    else:
        out_count, channels, taps = record.w3.shape
        shape = list(module.weight.shape)
        flops = module.flops(record.out_shape, out_count, channels * taps)
    return LayerPlan(name=name, kind=module.plan_kind, kept_out=[], kept_in=[],
                     kept_columns=None, shape_before=shape, shape_after=[], flops_before=flops,
                     flops_after=0, params_before=module.num_parameters(), params_after=0)


def _channel_count(module):
    """Channels of a channelwise layer with parameters: each parameter is one per channel."""
    return int(module.parameters()[0].shape[0])


def _channel_plan(name, module, analysis):
    """LayerPlan of a channelwise layer with parameters: the channels its owner keeps."""
    channels = _channel_count(module)
    owner = analysis.channel_owner.get(name)
    mask = np.ones(channels, dtype=bool) if owner is None else (
        owner[0].out_mask if owner[1] == "out" else owner[0].in_mask)
    kept = np.flatnonzero(mask).tolist()
    per_channel = module.num_parameters() // channels
    return LayerPlan(name=name, kind=module.plan_kind, kept_out=kept, kept_in=kept,
                     kept_columns=None, shape_before=[channels], shape_after=[len(kept)],
                     flops_before=0, flops_after=0, params_before=module.num_parameters(),
                     params_after=per_channel * len(kept))


def _first_layer(model):
    """The layer a model's forward most likely starts with: a Sequential's first, else the
    first declared layer among its sub-modules (checked against the traced chain later)."""
    if model.role is Role.CONTAINER:
        chain = static_chain(model)
        return chain[0][1] if chain else None
    if model.role is not None:
        return model
    for _, module in model.named_modules():
        if module.role not in (None, Role.CONTAINER):
            return module
    return None


def _infer_input_shape(model):
    """(input shape, the layer it was read from) for a model whose first layer fixes it."""
    first = _first_layer(model)
    shape = first.fixed_input_shape() if first is not None else None
    if shape is None:
        raise CompactionError("input_shape is needed for this model, e.g. input_shape=(1, 28, 28) "
                              "for MNIST images (one sample, no batch axis)")
    return shape, first


def plan_compaction(model, input_shape=None):
    """Decide what a compacted copy of `model` keeps (see the module docstring).

    `input_shape` is one sample's shape without the batch axis (e.g. (1, 28, 28)); it may
    be left out for a model that starts with a Linear layer (a Sequential, or a Module of
    yours whose first declared layer is the first its forward calls). Returns a CompactionPlan.
    `model` is a Sequential or any Module whose forward is a chain of declared layers and
    residual blocks (chain.py). Raises CompactionError for undeclared layers, a forward that
    is not a chain, or when a layer has nothing left.
    """
    guessed = None
    if input_shape is None:
        input_shape, guessed = _infer_input_shape(model)
    input_shape = tuple(input_shape)
    try:
        chain = layer_chain(model, input_shape)
    except CompactionError as error:
        if guessed is None:
            raise
        raise CompactionError(f"input_shape is needed for this model (the shape {input_shape} "
                              f"read from its first declared layer did not fit: {error})") from None
    if guessed is not None and chain and chain[0][1] is not guessed:
        raise CompactionError(f"input_shape is needed for this model: its forward starts with "
                              f"layer {chain[0][0]}, not the one input_shape was read from")
    analysis = _Analysis(chain, input_shape)
    analysis.settle()
    removed = tuple(f"{name}.branch." for name in analysis.removed_blocks)
    layers = []
    for chain_name, layer in chain:
        for name, module in layer.named_modules(prefix=chain_name):
            if module.plan_kind is None:
                if module._parameters:
                    raise undeclared(module, name, "how compaction keeps its parameters "
                                     "(plan_kind and compacted)")
                continue  # no weights: nothing to plan, the layer is copied
            if name.startswith(removed):
                layers.append(_removed_plan(name, module, analysis.records.get(name)))
            elif module.role is Role.WEIGHTS:
                layers.append(_layer_plan(name, analysis.records[name]))
            else:
                layers.append(_channel_plan(name, module, analysis))
    first = analysis.first
    indices = None
    if first is not None and not first.in_mask.all():
        indices = np.flatnonzero(first.in_mask).tolist()
    return CompactionPlan(input_shape=list(input_shape), input_indices=indices, layers=layers,
                          removed_blocks=list(analysis.removed_blocks))
