"""Find what can go: the zero groups of a trained model -> a CompactionPlan (plain data).

Rules (DESIGN.md, Compaction), for a producer layer P (Linear or Conv2d) whose outputs reach
the next layer Q through channelwise modules only (ReLU, pools, BatchNorm, Dropout, Flatten,
global average pool):

- output o of P is *dead* when its row of W (restricted to P's kept inputs) and its bias are
  zero, so it carries exactly 0 (ReLU(0) = 0, pools of 0 are 0), or when a BatchNorm between
  has scale and shift zero for o (the filter group's riders), or maps 0 to 0;
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
from dataclasses import asdict, dataclass

import numpy as np

from minissl import nn, to_numpy
from minissl.compact.shapes import CompactionError, trace_shapes


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

    def save_json(self, path):
        """Write the plan as JSON (plain lists and numbers)."""
        with open(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=1)

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
    """Analysis record of one Linear or Conv2d: its weight as W3 (out, channels, K)."""

    def __init__(self, name, module, in_shape, out_shape, channel_block):
        weight = to_numpy(module.weight.data)
        self.name, self.module, self.out_shape = name, module, out_shape
        self.is_conv = isinstance(module, nn.Conv2d)
        channels = weight.shape[1] if self.is_conv else weight.shape[1] // channel_block
        self.w3 = weight.reshape(weight.shape[0], channels, -1)  # (out, channels, K)
        bias = module.bias
        self.has_bias = bias is not None
        self.bias = to_numpy(bias.data) if self.has_bias else np.zeros(weight.shape[0])
        self.in_mask = np.ones(channels, dtype=bool)
        self.out_mask = np.ones(weight.shape[0], dtype=bool)
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


def _bn_keeps_zero(norm, dead):
    """After a BatchNorm: which channels are exactly zero (scale and shift zero, or 0 -> 0)."""
    gamma, beta = to_numpy(norm.weight.data), to_numpy(norm.bias.data)
    mean = to_numpy(norm.running_mean)
    return ((gamma == 0) & (beta == 0)) | (dead & (beta == 0) & (gamma * mean == 0))


class _Segment:
    """A producer's outputs reaching a consumer through channelwise modules (`norms` = BNs).

    With `keep_one` (the middle of a residual branch) a segment whose channels are all dead
    or unused keeps one of them instead of none: it then carries exactly zero to the
    consumer (`forced`), and the branch computes a constant that the block still adds.
    """

    def __init__(self, producer, consumer, norms, keep_one=False):
        self.producer, self.consumer, self.norms = producer, consumer, norms
        self.keep_one, self.forced = keep_one, False

    def settle(self):
        """Apply the dead/unused rules once; return True when the masks changed."""
        dead = self.producer.dead_outputs()
        for _, norm in self.norms:
            dead = _bn_keeps_zero(norm, dead)
        keep = self.producer.out_mask & ~dead & ~self.consumer.unused_inputs()
        if self.keep_one and not keep.any():
            keep[np.argmax(self.producer.out_mask)] = True  # the first channel still kept
            self.forced = True
        changed = bool(np.any(keep != self.producer.out_mask))
        self.producer.out_mask, self.consumer.in_mask = keep, keep.copy()
        return changed


class _Analysis:
    """Walks a Sequential once, recording weight layers, segments and BatchNorm owners."""

    def __init__(self, model, input_shape):
        if not isinstance(model, nn.Sequential):
            raise CompactionError(f"compact needs a Sequential model, got {type(model).__name__}")
        self.modules = list(model)
        self.shapes = trace_shapes(self.modules, input_shape)
        self.records, self.segments, self.order = {}, [], []
        self.norm_owner = {}    # BN name -> (record, "out" | "in") whose mask it follows
        self.first, self.removed_blocks = None, []
        self.blocks = []  # (name, branch records, shortcut record or None, middle segment)
        self._walk()

    def _record(self, name, module, index, flattened_from):
        # a Linear after Flatten reads each channel c of the (C, H, W) map as the block of
        # H*W columns c*H*W ... (c+1)*H*W - 1; everywhere else a channel is one column
        block = 1
        if flattened_from is not None and len(flattened_from) > 1:
            block = int(np.prod(flattened_from[1:]))
        record = _WeightLayer(name, module, self.shapes[index], self.shapes[index + 1], block)
        self.records[name] = record
        self.order.append(name)
        return record

    def _walk(self):
        """Pair each Linear/Conv2d (the producer) with the next one (the consumer) when only
        channelwise modules lie between them; a residual block between is a barrier."""
        producer, norms, barrier, flattened_from = None, [], False, None
        for index, module in enumerate(self.modules):
            name = str(index)
            if isinstance(module, (nn.GatheredConv2d, nn.Take)):
                raise CompactionError(
                    f"module {name} ({type(module).__name__}) is already compacted")
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                record = self._record(name, module, index, flattened_from)
                if producer is not None and not barrier:
                    self.segments.append(_Segment(producer, record, norms))
                elif producer is None and not barrier:
                    self.first = record
                for norm_name, _ in norms:
                    self.norm_owner[norm_name] = (producer or record, "out" if producer else "in")
                producer, norms, barrier, flattened_from = record, [], False, None
            elif isinstance(module, nn.BasicBlock):
                self._walk_block(name, module, index)
                norms, barrier = [], True  # the block's input and output widths are fixed
            else:
                if isinstance(module, nn.BatchNorm2d) and not barrier:
                    norms.append((name, module))
                if isinstance(module, nn.Flatten):
                    flattened_from = self.shapes[index]

    def _walk_block(self, name, block, index):
        shortcut = None
        if block.shortcut is not None:
            part = f"{name}.shortcut.0"
            shortcut = self.records[part] = _WeightLayer(part, block.shortcut[0],
                                                         self.shapes[index],
                                                         self.shapes[index + 1], 1)
            shortcut.may_be_zero = True  # checked in settle(): the branch must depend on x
            self.order.append(part)
        branch_shapes = trace_shapes(list(block.branch), self.shapes[index])
        parts = {}
        for position in (0, 3):
            part = f"{name}.branch.{position}"
            parts[position] = _WeightLayer(part, block.branch[position], branch_shapes[position],
                                           branch_shapes[position + 1], 1)
            self.records[part] = parts[position]
            self.order.append(part)
        if all(not np.any(to_numpy(p.data)) for p in block.branch.parameters()):
            self.removed_blocks.append(name)  # depth: the branch computes exactly 0
            for record in parts.values():
                record.removed = True
            self.blocks.append((name, {}, shortcut, None))
            return
        norm_first = (f"{name}.branch.1", block.branch[1])
        middle = _Segment(parts[0], parts[3], [norm_first], keep_one=True)
        self.segments.append(middle)
        self.norm_owner[norm_first[0]] = (parts[0], "out")
        for record in parts.values():
            record.may_be_zero = True  # checked in settle(): the shortcut must depend on x
        self.blocks.append((name, parts, shortcut, middle))

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

        if shortcut is None or np.any(kept_weights(shortcut)):
            return  # the identity, or a live projection, carries the input through
        zero = [record.name for record in parts.values() if not np.any(kept_weights(record))]
        if middle is None:
            cause = f"its branch {name}.branch is all zero (removed)"
        elif zero:
            cause = f"layer {zero[0]} has no nonzero weight left"
        elif middle.forced:
            cause = f"every middle channel of {name}.branch is zero or unused"
        else:
            return  # the branch carries the input through
        raise CompactionError(
            f"block {name}: {cause} and its projection shortcut's layer {shortcut.name} has no "
            f"nonzero weight left, so the network's output no longer depends on its input; "
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
    """LayerPlan of a Linear or Conv2d from its settled analysis record."""
    out_count, channels, block = record.w3.shape
    kept_out, kept_in = np.flatnonzero(record.out_mask), np.flatnonzero(record.in_mask)
    columns = record.kept_columns() if record.is_conv else None
    width = len(columns) if columns is not None else len(kept_in) * block
    pixels = int(np.prod(record.out_shape[1:])) if record.is_conv else 1
    bias = int(record.has_bias)
    shape = list(record.module.weight.shape)
    if record.is_conv:
        shape_after = [len(kept_out), width] if columns is not None else (
            [len(kept_out), len(kept_in)] + shape[2:])
    else:  # dense: kept input columns (a flattened channel keeps its whole block)
        kept_in = (kept_in[:, None] * block + np.arange(block)).ravel()
        shape_after = [len(kept_out), width]
    return LayerPlan(name=name, kind="conv" if record.is_conv else "linear",
                     kept_out=kept_out.tolist(), kept_in=kept_in.tolist(), kept_columns=columns,
                     shape_before=shape, shape_after=shape_after,
                     flops_before=2 * out_count * channels * block * pixels,
                     flops_after=2 * len(kept_out) * width * pixels,
                     params_before=out_count * (channels * block + bias),
                     params_after=len(kept_out) * (width + bias))


def _removed_plan(name, module, record):
    """LayerPlan of a layer inside a dropped residual block: nothing stays."""
    is_norm = isinstance(module, nn.BatchNorm2d)
    shape = [module.channels] if is_norm else list(module.weight.shape)
    flops = 0 if is_norm else 2 * record.w3.size * int(np.prod(record.out_shape[1:]))
    return LayerPlan(name=name, kind="batch_norm" if is_norm else "conv", kept_out=[], kept_in=[],
                     kept_columns=None, shape_before=shape, shape_after=[], flops_before=flops,
                     flops_after=0, params_before=module.num_parameters(), params_after=0)


def _norm_plan(name, norm, analysis):
    owner = analysis.norm_owner.get(name)
    mask = np.ones(norm.channels, dtype=bool) if owner is None else (
        owner[0].out_mask if owner[1] == "out" else owner[0].in_mask)
    kept = np.flatnonzero(mask).tolist()
    return LayerPlan(name=name, kind="batch_norm", kept_out=kept, kept_in=kept, kept_columns=None,
                     shape_before=[norm.channels], shape_after=[len(kept)], flops_before=0,
                     flops_after=0, params_before=2 * norm.channels, params_after=2 * len(kept))


def _infer_input_shape(model):
    first = next((module for _, module in model.named_modules()
                  if isinstance(module, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear) and isinstance(model[0], nn.Linear):
        return (first.in_features,)
    raise CompactionError("input_shape is needed for this model, e.g. input_shape=(1, 28, 28) "
                          "for MNIST images (one sample, no batch axis)")


def plan_compaction(model, input_shape=None):
    """Decide what a compacted copy of `model` keeps (see the module docstring).

    `input_shape` is one sample's shape without the batch axis (e.g. (1, 28, 28)); it may
    be left out for a model that starts with a Linear layer. Returns a CompactionPlan.
    Raises CompactionError for unsupported modules or when a layer has nothing left.
    """
    input_shape = tuple(input_shape) if input_shape is not None else _infer_input_shape(model)
    analysis = _Analysis(model, input_shape)
    analysis.settle()
    removed = tuple(f"{name}.branch." for name in analysis.removed_blocks)
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
            continue
        if name.startswith(removed):
            layers.append(_removed_plan(name, module, analysis.records.get(name)))
        elif isinstance(module, nn.BatchNorm2d):
            layers.append(_norm_plan(name, module, analysis))
        else:
            layers.append(_layer_plan(name, analysis.records[name]))
    first = analysis.first
    indices = None
    if first is not None and not first.in_mask.all():
        indices = np.flatnonzero(first.in_mask).tolist()
    return CompactionPlan(input_shape=list(input_shape), input_indices=indices, layers=layers,
                          removed_blocks=list(analysis.removed_blocks))
