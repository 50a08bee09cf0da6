"""Groups of weights for Structured Sparsity Learning, as axis views on parameters.

A group set is every group of one kind on one layer. Each member parameter of the set
is split into the same G groups along its *group axes*; the other axes are summed over
when a group's norm is taken. So the norms of all groups of a set come from one
vectorized reduction, and the proximal step is one broadcast multiply.

| kind        | member (group axes)                    | one group            | paper term       |
|-------------|----------------------------------------|----------------------|------------------|
| NEURON_IN   | dense W (out, in): axis 1              | column W[:, i]       | neuron-wise      |
| NEURON_OUT  | dense W: axis 0, bias: axis 0          | row W[o, :] and b[o] | neuron-wise      |
| FILTER      | conv W (N, C, M, K): axis 0, bias: 0   | W[n] and b[n]        | filter-/row-wise |
| CHANNEL     | conv W: axis 1                         | W[:, c]              | channel-wise     |
| SHAPE       | conv W: axes (1, 2, 3)                 | fiber W[:, c, m, k]  | shape-/column-wise |
| DEPTH       | every parameter of a residual branch   | the whole branch     | depth-wise       |

A DEPTH group is the residual *branch* of a block (its convolutions and BatchNorms), never the
projection shortcut: a zero branch leaves relu(shortcut(x)), so the shortcut must stay. A
rule may name the block ("3") or its branch ("3.branch"); both mean the branch.

A bias rides with its output neuron or filter so that a zeroed group gives an exactly
zero output (docs/design.md, "Weight views and groups").
"""

import dataclasses
import enum

import numpy as np

from minissl.backend import xp_of


class GroupKind(enum.Enum):
    """The structures SSL can remove. The enum order is the order prox applies them in."""

    DEPTH = "depth"
    FILTER = "filter"
    CHANNEL = "channel"
    SHAPE = "shape"
    NEURON_OUT = "neuron_out"
    NEURON_IN = "neuron_in"


@dataclasses.dataclass(frozen=True)
class Member:
    """One parameter of a group set and the axes that index its groups."""

    parameter: object          # a Parameter (its .data is read and scaled in place)
    group_axes: tuple

    def reduce_axes(self):
        """The axes summed over when a group norm is taken."""
        return tuple(a for a in range(self.parameter.ndim) if a not in self.group_axes)

    def expand(self, per_group):
        """Broadcast a (*group shape) array against this member's data."""
        xp = xp_of(per_group)
        axes = self.reduce_axes()
        return xp.expand_dims(per_group, axes) if axes else per_group


@dataclasses.dataclass(frozen=True)
class GroupSet:
    """All groups of one kind on one layer (or block).

    Shapes: `norms()` returns an array of `group_shape`, e.g. (in,) for NEURON_IN on a
    dense layer, (C, M, K) for SHAPE on a conv layer, () for DEPTH.
    """

    kind: GroupKind
    layer: str
    members: tuple

    @property
    def group_shape(self):
        first = self.members[0]
        return tuple(first.parameter.shape[a] for a in first.group_axes)

    @property
    def num_groups(self):
        return int(np.prod(self.group_shape, dtype=np.int64))

    def squared_norms(self):
        """Sum of squares of every group, over all members. Shape: group_shape."""
        total = 0.0
        for member in self.members:
            data = member.parameter.data
            total = total + (data * data).sum(axis=member.reduce_axes())
        return total

    def norms(self):
        """Euclidean norm ||w_g||_2 of every group. Shape: group_shape."""
        return xp_of(self.members[0].parameter.data).sqrt(self.squared_norms())

    def group_size(self):
        """Number of weights |g| in one group (all groups of a set have the same size)."""
        return sum(int(np.prod([m.parameter.shape[a] for a in m.reduce_axes()], dtype=np.int64))
                   for m in self.members)

    def scale(self, factors):
        """Multiply every group by its factor, in place. Shapes: factors (group_shape)."""
        for member in self.members:
            member.parameter.data *= member.expand(factors).astype(member.parameter.dtype, copy=False)


# The output groups: a bias (if any) rides along axis 0, so a zero group is a zero output.
BIAS_RIDES = (GroupKind.NEURON_OUT, GroupKind.FILTER)


def group_axes(layer):
    """{GroupKind: axes of the weight that index its groups} that `layer` declares (its
    `ssl_group_axes`, minissl/nn/protocol.py); {} for a layer without SSL groups."""
    return getattr(layer, "ssl_group_axes", None) or {}


def layer_groups(layer, kind, name="", riders=()):
    """Return the GroupSet of `kind` on a layer with `weight` (and optional `bias`).

    The layer declares which weight axes index each kind's groups (`ssl_group_axes`): a
    Linear (out, in) takes NEURON_IN and NEURON_OUT, a Conv2d (N, C, M, K) FILTER, CHANNEL and
    SHAPE. `riders` are modules whose parameters are all per-output vectors of length out / N
    (e.g. the BatchNorm after a conv: its scale and shift) and join the NEURON_OUT or
    FILTER groups, so that a zero group still means a zero output.
    Raises ValueError when `kind` does not apply to the layer or a rider does not fit.
    """
    table = group_axes(layer)
    if kind not in table:
        weight = getattr(layer, "weight", None)
        what = f"with a {weight.ndim}-D weight {weight.shape}" if weight is not None else (
            "without a weight")
        raise ValueError(f"group kind {kind.name} does not apply to layer {name or type(layer).__name__} "
                         f"{what}; possible kinds: {[k.name for k in table]}")
    weight = layer.weight
    members = [Member(weight, table[kind])]
    bias = getattr(layer, "bias", None)
    if kind in BIAS_RIDES and bias is not None:
        members.append(Member(bias, (0,)))
    if riders and kind not in BIAS_RIDES:
        raise ValueError(f"riders join only {[k.name for k in BIAS_RIDES]} groups, not {kind.name}")
    for rider in riders:
        for rider_name, parameter in rider.named_parameters():
            if parameter.shape != (weight.shape[0],):
                raise ValueError(f"rider parameter {rider_name} of {type(rider).__name__} has shape "
                                 f"{parameter.shape}; it must be ({weight.shape[0]},) to ride with {name}")
            members.append(Member(parameter, (0,)))
    return GroupSet(kind, name, tuple(members))


def block_groups(block, name=""):
    """Return the DEPTH GroupSet of a residual branch: one group of all its parameters.

    `block` is the branch itself (a module made of layers), or a block with a `branch` (a
    BasicBlock), whose branch is taken: the shortcut never joins the group. A single layer
    (a Linear, a Conv2d) is refused with ValueError: as one group it would be all or nothing.
    """
    if not hasattr(block, "branch") and not getattr(block, "_modules", None):
        raise ValueError(f"group kind DEPTH groups a residual branch (a block with a `branch`, "
                         f"or the branch itself); {name or 'the layer'} is a "
                         f"{type(block).__name__}, one layer: give it filter, channel, shape or "
                         f"neuron groups instead")
    block = getattr(block, "branch", block)
    parameters = block.parameters()
    if not parameters:
        raise ValueError(f"block {name or type(block).__name__} has no parameters to group")
    return GroupSet(GroupKind.DEPTH, name, tuple(Member(p, ()) for p in parameters))
